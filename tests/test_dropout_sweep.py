"""The dropout sweep: its grid, its cross-fit plan (folds and the sample cap, from content
ids), one real training per (config, repeat, fold) on the process's one traced head, the
sweep cache that lets a rerun skip every training, and scoring.

The cache tests run the real `dropout_sweep` flow (ephemeral Prefect server) on a real
Parquet feature cache of tiny (2, 2, 8) features, with a 4-4 head, 1 epoch, 1 repeat x 2
folds.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from synthetic_features import splits_of, write_cache

from inception_retrain.data.manifest import read_image_rows
from inception_retrain.dropout import sweep
from inception_retrain.dropout.report import sweep_cache_text
from inception_retrain.dropout.sweep_plan import plan_for
from inception_retrain.dropout.sweep_store import SweepStore, training_rows_fingerprint
from inception_retrain.dropout.sweep_summary import TrainingResult
from inception_retrain.evaluation.crossfit import image_outcomes
from inception_retrain.plumbing.files import read_json
from inception_retrain.training.fit import fit_head
from inception_retrain.training.head_spec import HeadSpec

FINGERPRINT = "0123456789abcdef"
SHAPE = (2, 2, 8)
SPLITS = splits_of(14, 5, 5)


def spec_for(tmp_path, **fields) -> sweep.SweepSpec:
    return sweep.SweepSpec(
        cache_dir=tmp_path,
        manifest_path=tmp_path / "manifest.parquet",
        n_classes=2,
        feature_shape=(3, 3, 768),
        **fields,
    )


def cells_of(spec) -> list[tuple[float, str]]:
    return [(c.rate, c.placement) for c in sweep.grid(spec)]


def test_the_claims_grid_is_four_cells_and_the_run_head_joins_it(tmp_path):
    spec = spec_for(tmp_path)
    assert cells_of(spec) == [
        (0.0, "none"),
        (0.2, "after_dense2"),
        (0.5, "after_dense2"),
        (0.5, "after_both"),
    ]
    assert len(sweep.trainings(spec)) == 4 * 2 * 5 + 1  # 2 repeats x 5 folds, C2's check
    own = spec_for(tmp_path, head=HeadSpec(dropout_rate=0.3, dropout_placement="after_both"))
    assert cells_of(own)[-1] == (0.3, "after_both") and sweep.tested_cell(own) == (
        0.3,
        "after_both",
    )
    plain = spec_for(tmp_path, head=HeadSpec(dropout_placement="none"))
    assert len(cells_of(plain)) == 4 and sweep.tested_cell(plain) == (0.2, "after_dense2")


def test_the_full_grid_maps_rate_zero_to_one_training_and_adds_the_claims_cells(tmp_path):
    spec = spec_for(
        tmp_path,
        grid="full",
        rates=[0.0, 0.2],
        placements=["after_dense2", "none"],
        repeats=1,
        folds=2,
        order_check=False,
    )
    rows = sweep.grid(spec)
    effective = {(r.rate, r.placement): (r.effective_rate, r.effective_placement) for r in rows}
    assert effective[(0.0, "after_dense2")] == effective[(0.2, "none")] == (0.0, "none")
    added = [(r.rate, r.placement) for r in rows if r.added]
    assert added == [(0.5, "after_dense2"), (0.5, "after_both")]  # C1 and C4 need these
    cells = [(c.rate, c.placement, c.repeat, c.fold) for c in sweep.trainings(spec)]
    assert len(cells) == len(set(cells)) == 4 * 2
    assert cells.count((0.0, "none", 0, 1)) == 1


def test_scores_and_degenerate_trainings():
    labels = np.array([0, 0, 0, 1, 1])
    one_class = np.tile([0.6, 0.4], (5, 1))
    scores = image_outcomes(one_class, labels)
    assert scores["accuracy"].tolist() == [1, 1, 1, 0, 0]
    assert scores["brier"] == pytest.approx([0.16, 0.16, 0.16, 0.36, 0.36])
    learned = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4]])
    scores = image_outcomes(learned, labels)
    assert scores["accuracy"].tolist() == [1, 1, 0, 1, 0]
    assert scores["log_loss"] == pytest.approx(-np.log([0.9, 0.8, 0.3, 0.8, 0.4]))

    def result(probabilities):
        return TrainingResult(
            rate=0.0,
            placement="none",
            repeat=0,
            fold=0,
            seed=0,
            dropout_layers=0,
            epochs_run=1,
            history={},
            held_out=list(range(5)),
            probabilities=probabilities.tolist(),
            train_accuracy=1.0,
            n_train=10,
            seconds=0.1,
        )

    assert result(one_class).degenerate and not result(learned).degenerate


def test_the_plan_is_stratified_deterministic_and_samples_by_content_id():
    ids = [f"{i:05d}-image" for i in range(1000)]
    labels = [int(i % 10 < 3) for i in range(1000)]  # 30% positives
    plan = plan_for(ids, labels, folds=5, repeats=2, max_images=None)
    folds = plan.fold_array()
    assert folds.shape == (2, 1000) and not plan.sampled
    for repeat in range(2):
        for fold in range(5):
            held = plan.held_out_rows(repeat, fold)
            assert len(held) == 200 and np.mean(np.asarray(plan.labels)[held]) == 0.3
    assert (folds[0] != folds[1]).mean() > 0.6  # a repeat re-splits the images
    shuffled = plan_for(ids[::-1], labels[::-1], folds=5, repeats=2, max_images=None)
    assert shuffled == plan  # a function of content ids, not of their order

    capped = plan_for(ids, labels, folds=5, repeats=2, max_images=300)
    assert capped.sampled and capped.n == 300 and capped.pool_size == 1000
    assert capped.class_counts() == [210, 90]  # stratified: each class its share
    grown = plan_for(
        [*ids, *(f"{i:05d}-new" for i in range(200))],
        [*labels, *(int(i % 10 < 3) for i in range(200))],
        folds=5,
        repeats=2,
        max_images=300,
    )
    kept = len(set(capped.content_ids) & set(grown.content_ids))
    assert kept >= 240  # a grown folder keeps most of its sample (about 1000/1200 of it)


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    """A learnable 2-class cache of 64 train, 32 validation and 40 test rows."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(136, *SHAPE)).astype(np.float32)
    y = (x[:, 0, 0, 0] > 0).astype(int)
    work = tmp_path_factory.mktemp("small-sweep") / "work"
    cache_dir, manifest = write_cache(work, x, y, splits_of(64, 32, 40), "fedcba9876543210")
    return cache_dir, manifest


def test_every_cell_trains_exactly_like_fit_head_on_the_shared_traced_head(small_cache):
    """The one traced model per process, reset in place, is the training stage's own loop on
    the fold's training images, validated on its held-out fold: the same weights and curve
    as a fresh `fit_head`, whatever ran before it."""
    cache_dir, manifest = small_cache
    head = HeadSpec(hidden_units=(16, 32), learning_rate=1e-2)
    spec = sweep.SweepSpec(
        cache_dir=cache_dir,
        manifest_path=manifest,
        n_classes=2,
        feature_shape=SHAPE,
        head=head,
        batch_size=16,
        epochs=3,
        folds=2,
        repeats=1,
        standardize=False,
        mc_passes=4,
    )
    from inception_retrain.training.reusable_head import sweep_head

    plan = sweep.plan(spec)
    assert plan.n == 96  # train + validation; the 40 test images are not the sweep's
    cells = sweep.trainings(spec)
    results = [sweep.train_cell(spec, cell) for cell in [*cells, cells[0]]]
    last = cells[0]
    features, labels = sweep._data(
        str(cache_dir), str(manifest), 2, 1, spec.max_images, spec.batch_size
    )[:2]
    rows, held = plan.training_rows(0, 0), plan.held_out_rows(0, 0)
    model, fitted = fit_head(
        (features[rows], labels[rows]),
        (features[held], labels[held]),
        spec=head.with_dropout(last.rate, last.placement),
        seed=spec.seed_of(0, 0),
        epochs=3,
        batch_size=16,
        patience=0,
    )
    traced = sweep_head(SHAPE, 2, head).model
    for expected, got in zip(model.get_weights(), traced.trainable_weights, strict=True):
        np.testing.assert_array_equal(expected, got.numpy())
    assert results[-1].history["val_loss"] == fitted.history["val_loss"]
    assert results[-1].probabilities == results[0].probabilities  # again after 8 others: same
    assert results[-1].held_out == held.tolist()
    both = next(r for r in results if r.placement == "after_both")
    assert both.dropout_layers == 2 and results[0].dropout_layers == 0
    assert both.epochs_run == len(both.history["val_loss"]) == 3  # the fixed budget
    dropout = [r for r in results if r.dropout_layers and r.order == "after"]
    assert all(r.mc_std is not None and len(r.mc_std) == len(r.held_out) for r in dropout)
    assert min(max(r.mc_std) for r in dropout) > 0  # MC passes vary
    assert all(r.mc_std is None for r in results if r not in dropout)
    order = next(r for r in results if r.order == "before")
    seed_cell = next(
        r for r in dropout if (r.rate, r.placement, r.repeat, r.fold) == (0.2, "after_dense2", 0, 0)
    )
    assert order.probabilities == seed_cell.probabilities  # C2: ReLU commutes with Dropout


def test_standardised_sweep_training_matches_the_main_heads_standardisation(small_cache):
    """With `standardize`, a sweep training is a fresh head trained on the fold's features
    standardised with the fold's training statistics, as the training stage would do."""
    from inception_retrain.training.standardize import feature_statistics

    cache_dir, manifest = small_cache
    head = HeadSpec(hidden_units=(16, 32), learning_rate=1e-2, dropout_placement="none")
    spec = sweep.SweepSpec(
        cache_dir=cache_dir,
        manifest_path=manifest,
        n_classes=2,
        feature_shape=SHAPE,
        head=head,
        batch_size=16,
        epochs=2,
        folds=2,
        repeats=1,
        mc_passes=0,
        order_check=False,
    )
    result = sweep.train_cell(spec, sweep.SweepCell(rate=0.0, placement="none", repeat=0, fold=1))
    plan = sweep.plan(spec)
    features, labels = sweep._data(
        str(cache_dir), str(manifest), 2, 1, spec.max_images, spec.batch_size
    )[:2]
    rows, held = plan.training_rows(0, 1), plan.held_out_rows(0, 1)
    mean, scale = feature_statistics(features[rows])
    model, fitted = fit_head(
        ((features[rows] - mean) * scale, labels[rows]),
        ((features[held] - mean) * scale, labels[held]),
        spec=head,
        seed=spec.seed_of(0, 1),
        epochs=2,
        batch_size=16,
        patience=0,
    )
    expected = model.predict((features[held] - mean) * scale, verbose=0).reshape(-1)
    got = np.asarray(result.probabilities)[:, 1]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert result.history["val_loss"] == pytest.approx(fitted.history["val_loss"], rel=1e-4)


def test_train_cell_on_a_real_run_cache(tiny_run):
    config = tiny_run.config
    spec = config.model_copy(
        update={"sweep_epochs": 2, "sweep_folds": 2, "sweep_repeats": 1}
    ).sweep(
        tiny_run.cache.cache_dir,
        tiny_run.manifest.path,
        2,
        tiny_run.cache.feature_shape,
    )
    assert (spec.folds, spec.repeats, spec.epochs, spec.seed) == (2, 1, 2, config.seed)
    assert spec.standardize == config.standardize_features
    assert spec.sweeps_dir == config.workdir / "sweeps"  # the report stage's WORKDIR
    both = sweep.SweepCell(rate=0.5, placement="after_both", repeat=0, fold=1)
    first, again = sweep.train_cell(spec, both), sweep.train_cell(spec, both)
    assert first.dropout_layers == 2 and first.epochs_run == 2
    assert first.probabilities == again.probabilities  # same seed, same data order: same model
    # every ok row is cached, so the rows the sweep is keyed on are the manifest's rows
    rows = training_rows_fingerprint(tiny_run.cache.cache_dir, tiny_run.manifest.path)
    assert rows == tiny_run.manifest.fingerprint
    plan = sweep.plan(spec)
    test_ids = set(read_image_rows(tiny_run.manifest.path, "test").content_ids)
    assert plan.n > 0 and not test_ids & set(plan.content_ids)  # the test split is untouched


# --- the sweep cache ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """WORKDIR/cache/<fingerprint>/ with 24 real Parquet features whose class is learnable,
    and a manifest of the same rows; returns (workdir, ids, labels)."""
    from inception_retrain.data.manifest import read_image_rows

    workdir = tmp_path_factory.mktemp("sweep-cache") / "work"
    labels = [i % 2 for i in range(len(SPLITS))]
    noise = np.random.default_rng(0).normal(size=(len(labels), *SHAPE)).astype(np.float32)
    features = noise + 2.0 * np.array(labels, np.float32)[:, None, None, None]
    _, manifest = write_cache(workdir, features, labels, SPLITS, FINGERPRINT)
    return workdir, read_image_rows(manifest).content_ids, labels


def tiny_spec(workdir, **fields) -> sweep.SweepSpec:
    """The claims grid, one repeat of two folds, one epoch: 8 trainings."""
    values = dict(
        cache_dir=workdir / "cache" / FINGERPRINT,
        manifest_path=workdir / "manifest.parquet",
        n_classes=2,
        feature_shape=SHAPE,
        head=HeadSpec(hidden_units=(4, 4), learning_rate=1e-2),
        batch_size=8,
        epochs=1,
        folds=2,
        repeats=1,
        mc_passes=2,
        order_check=False,
    )
    return sweep.SweepSpec(**{**values, **fields})


def run_flow(spec: sweep.SweepSpec):
    """The real `dropout_sweep` flow; its summary and flow run id."""
    from inception_retrain.flows.sweep import dropout_sweep

    state = dropout_sweep(spec, return_state=True)
    return state.result(), str(state.state_details.flow_run_id)


def task_run_names(flow_run_id: str, at_least: int = 0, wait_s: float = 30.0) -> list[str]:
    """Names of a flow run's task runs (waits until `at_least` have reached the server)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter

    deadline = time.monotonic() + wait_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]}))
            if len(runs) >= at_least or time.monotonic() > deadline:
                return sorted(run.name for run in runs)
            time.sleep(0.5)


def timeless(result: dict) -> dict:
    """A stored training result without its wall-clock times."""
    history = {k: v for k, v in result["history"].items() if k != "seconds"}
    return {**result, "seconds": None, "history": history}


def without(summary, *keys: str) -> dict:
    return {key: value for key, value in summary.model_dump().items() if key not in keys}


@pytest.fixture(scope="module")
def first_sweep(tiny_cache):
    workdir, _, _ = tiny_cache
    spec = tiny_spec(workdir)
    summary, flow_run_id = run_flow(spec)
    return spec, summary, flow_run_id


def test_a_rerun_trains_nothing_and_a_recomputed_cell_equals_the_stored_one(first_sweep):
    spec, first, first_id = first_sweep
    store = SweepStore.for_spec(spec)
    assert store.directory.parent == spec.cache_dir.parent.parent / "sweeps"  # WORKDIR/sweeps
    assert first.cache.model_dump() == {"dir": str(store.directory), "computed": 8, "reused": 0}
    assert read_json(store.directory / "key.json")["backbone_fingerprint"] == FINGERPRINT

    again, again_id = run_flow(spec)
    assert again.cache.model_dump() == {"dir": str(store.directory), "computed": 0, "reused": 8}
    assert without(again, "cache", "wall_seconds") == without(first, "cache", "wall_seconds")
    assert "0 trained in this run, 8 reused" in sweep_cache_text(again)

    # A damaged file is a miss: that one training runs again and gives the stored result.
    victim = store.path(spec, sweep.SweepCell(rate=0.5, placement="after_both", repeat=0, fold=0))
    stored = read_json(victim)["result"]
    victim.write_text("{ not json")
    fixed, fixed_id = run_flow(spec)
    assert (fixed.cache.computed, fixed.cache.reused) == (1, 7)
    recomputed = read_json(victim)["result"]
    assert timeless(recomputed) == timeless(stored)
    changing = ("cache", "seconds_total", "epoch_seconds_total", "wall_seconds", "results")
    assert without(fixed, *changing) == without(first, *changing)

    # One task run per computed training, none for reused ones (the later run's task run
    # reaching the server means the earlier runs' have too: events arrive in order).
    assert task_run_names(fixed_id, at_least=1) == ["sweep-after_both-0.5-r0f0"]
    assert len(task_run_names(first_id, at_least=8)) == 8
    assert task_run_names(again_id) == []


def test_changed_inputs_train_again_and_a_grown_grid_reuses_its_cells(first_sweep):
    spec, _, _ = first_sweep
    longer, _ = run_flow(spec.model_copy(update={"epochs": 2}))
    assert longer.cache.computed == 8
    assert longer.results[0].epochs_run == 2
    grown, _ = run_flow(
        spec.model_copy(
            update={"grid": "full", "rates": [0.0, 0.5, 0.8], "placements": ["after_dense2"]}
        )
    )
    assert (grown.cache.computed, grown.cache.reused) == (2, 8)  # only rate 0.8's two folds
    own, _ = run_flow(spec.model_copy(update={"head": spec.head.with_dropout(0.5, "after_both")}))
    assert (own.cache.computed, own.cache.reused) == (0, 8)  # another run head: same trainings
    assert own.tested == (0.5, "after_both")


def test_the_sweep_cache_key_follows_the_training_rows(tiny_cache, tmp_path):
    from inception_retrain.data.manifest import ManifestRow, write_manifest

    def manifest(path, ids, labels, splits):
        rows = [
            ManifestRow(
                uri=f"/img/{cid}.png",
                label=f"c{label}",
                label_index=label,
                split=split,
                content_id=cid,
            )
            for cid, label, split in zip(ids, labels, splits, strict=True)
        ]
        write_manifest(path, rows, ["c0", "c1"], "test", {})

    workdir, ids, labels = tiny_cache
    spec = tiny_spec(workdir)
    directory = SweepStore.for_spec(spec).directory
    assert SweepStore.for_spec(tiny_spec(workdir, epochs=3)).directory == directory

    relabelled = [1 - labels[0], *labels[1:]]
    manifest(tmp_path / "relabelled.parquet", ids, relabelled, SPLITS)
    other = tiny_spec(workdir, manifest_path=tmp_path / "relabelled.parquet")
    assert SweepStore.for_spec(other).directory != directory
    # a manifest row without cached features is not trained on, so it changes nothing
    manifest(tmp_path / "extra.parquet", [*ids, "f" * 64], [*labels, 0], [*SPLITS, "train"])
    same = tiny_spec(workdir, manifest_path=tmp_path / "extra.parquet")
    assert SweepStore.for_spec(same).directory == directory

    explicit = SweepStore.for_spec(tiny_spec(workdir, sweeps_dir=tmp_path / "mine"))
    assert explicit.directory.parent == tmp_path / "mine"
    # a cache outside WORKDIR/cache/ and no sweeps_dir: nowhere to store, nothing cached
    elsewhere = tmp_path / "features"
    elsewhere.mkdir()
    for part in spec.cache_dir.glob("part-*.parquet"):
        (elsewhere / part.name).write_bytes(part.read_bytes())
    assert SweepStore.for_spec(tiny_spec(workdir, cache_dir=elsewhere)) is None


def test_a_sweep_spec_rejects_unknown_placements_and_impossible_rates():
    from pydantic import ValidationError

    base = {"cache_dir": "/c", "manifest_path": "/m", "n_classes": 2, "feature_shape": (2, 2, 8)}
    for bad in (
        {"placements": ["after_dense"]},
        {"rates": [1.0]},
        {"epochs": 0},
        {"grid": "some"},
        {"folds": 1},
        {"repeats": 0},
    ):
        with pytest.raises(ValidationError):
            sweep.SweepSpec(**base, **bad)
