"""The F5 sweep: its grid, one real training per cell, the sweep cache that lets a rerun
skip every training, and the rules C1, C4 and F5 apply.

The cache tests run the real `dropout_sweep` flow (ephemeral Prefect server) on a real
Parquet feature cache of 24 tiny (2, 2, 8) features, with a 4-4 head and 1 epoch.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from inception_retrain.dropout import sweep, verdicts
from inception_retrain.dropout.report import sweep_cache_text
from inception_retrain.dropout.sweep_store import SweepStore, training_rows_fingerprint
from inception_retrain.files import read_json
from inception_retrain.head_spec import HeadSpec

FINGERPRINT = "0123456789abcdef"
SHAPE = (2, 2, 8)
SPLITS = ["train"] * 14 + ["validation"] * 5 + ["test"] * 5


def spec_for(tmp_path, **fields) -> sweep.SweepSpec:
    return sweep.SweepSpec(
        cache_dir=tmp_path, manifest_path=tmp_path / "manifest.parquet", n_classes=2,
        feature_shape=(3, 3, 768), **fields,
    )  # fmt: skip


def test_rate_zero_and_none_are_one_training_and_claim_cells_are_added(tmp_path):
    spec = spec_for(tmp_path, rates=[0.0, 0.2], placements=["after_dense2", "none"], seeds=[0, 1])
    rows = sweep.grid(spec)
    effective = {(r["rate"], r["placement"]): (r["effective_rate"], r["effective_placement"])
                 for r in rows}  # fmt: skip
    assert effective[(0.0, "after_dense2")] == effective[(0.2, "none")] == (0.0, "none")
    assert effective[(0.2, "after_dense2")] == (0.2, "after_dense2")
    added = [(r["rate"], r["placement"]) for r in rows if r["added"]]
    assert added == [(0.5, "after_dense2"), (0.5, "after_both")]  # C1 and C4 need these
    cells = [(c.rate, c.placement, c.seed) for c in sweep.trainings(spec)]
    assert len(cells) == len(set(cells)) == 4 * 2
    assert cells.count((0.0, "none", 0)) == 1


def test_train_cell_trains_the_requested_head_deterministically(tiny_run):
    config = tiny_run.config
    spec = sweep.SweepSpec.from_run(
        config.model_copy(update={"sweep_epochs": 2}), tiny_run.cache.cache_dir,
        tiny_run.manifest.path, 2, tiny_run.cache.feature_shape,
    )  # fmt: skip
    both = sweep.SweepCell(rate=0.5, placement="after_both", seed=3)
    first, again = sweep.train_cell(spec, both), sweep.train_cell(spec, both)
    assert first["dropout_layers"] == 2
    assert len(first["history"]["val_accuracy"]) == 2
    assert first["split_sizes"]["train"] > 0 and first["test"]["accuracy"] is not None
    for split in ("train", "validation", "test"):
        assert first[split] == again[split]  # same seed, same data order: same model
    assert spec.sweeps_dir == config.workdir / "sweeps"  # the report stage's WORKDIR
    # every ok row is cached, so the rows the sweep is keyed on are the manifest's rows
    rows = training_rows_fingerprint(tiny_run.cache.cache_dir, tiny_run.manifest.path)
    assert rows == tiny_run.manifest.fingerprint
    plain = sweep.train_cell(spec, sweep.SweepCell(rate=0.0, placement="none", seed=3))
    assert plain["dropout_layers"] == 0
    summary = sweep.summarize(spec, [first, plain])
    assert summary["selection_split"] == "validation"
    assert sweep.find(summary, 0.0, "after_both")["placement"] == "none"


# --- the sweep cache ---------------------------------------------------------------------


def write_manifest(path, ids, labels, splits) -> None:
    from inception_retrain.manifest import ManifestRow, write_manifest

    rows = [
        ManifestRow(
            uri=f"/img/{cid}.png", label=f"c{label}", label_index=label, split=split, content_id=cid
        )  # fmt: skip
        for cid, label, split in zip(ids, labels, splits, strict=True)
    ]
    write_manifest(path, rows, ["c0", "c1"], "test", {})


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """WORKDIR/cache/<fingerprint>/ with 24 real Parquet features whose class is learnable,
    and a manifest of the same rows; returns (workdir, ids, labels)."""
    from inception_retrain.feature_parts import feature_schema, write_part

    workdir = tmp_path_factory.mktemp("sweep-cache") / "work"
    labels = [i % 2 for i in range(len(SPLITS))]
    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(len(SPLITS))]
    noise = np.random.default_rng(0).normal(size=(len(ids), *SHAPE)).astype(np.float32)
    features = noise + 2.0 * np.array(labels, np.float32)[:, None, None, None]
    schema = feature_schema(SHAPE, "float32", {"fingerprint": FINGERPRINT})
    write_part(workdir / "cache" / FINGERPRINT, schema, ids, labels, SPLITS, features)
    write_manifest(workdir / "manifest.parquet", ids, labels, SPLITS)
    return workdir, ids, labels


def tiny_spec(workdir, **fields) -> sweep.SweepSpec:
    """Rates 0 and 0.5 after Dense 2, one seed: with C1/C4's added cell, 3 trainings."""
    values = dict(
        cache_dir=workdir / "cache" / FINGERPRINT, manifest_path=workdir / "manifest.parquet",
        n_classes=2, feature_shape=SHAPE, head=HeadSpec(hidden_units=(4, 4), learning_rate=1e-2),
        batch_size=8, epochs=1, rates=[0.0, 0.5], placements=["after_dense2"], seeds=[0],
    )  # fmt: skip
    return sweep.SweepSpec(**{**values, **fields})


def run_flow(spec: sweep.SweepSpec) -> tuple[dict, str]:
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


def without(summary: dict, *keys: str) -> dict:
    return {key: value for key, value in summary.items() if key not in keys}


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
    assert first["cache"] == {"dir": str(store.directory), "computed": 3, "reused": 0}
    assert read_json(store.directory / "key.json")["backbone_fingerprint"] == FINGERPRINT

    again, again_id = run_flow(spec)
    assert again["cache"] == {"dir": str(store.directory), "computed": 0, "reused": 3}
    assert without(again, "cache") == without(first, "cache")  # the stored results as they were
    assert "0 trained in this run, 3 reused" in sweep_cache_text(again)

    # A damaged file is a miss: that one training runs again and gives the stored result.
    victim = store.path(spec, sweep.SweepCell(rate=0.5, placement="after_both", seed=0))
    stored = read_json(victim)["result"]
    victim.write_text("{ not json")
    fixed, fixed_id = run_flow(spec)
    assert fixed["cache"]["computed"] == 1 and fixed["cache"]["reused"] == 2
    recomputed = read_json(victim)["result"]
    assert without(recomputed, "seconds") == without(stored, "seconds")
    assert without(fixed, "cache", "seconds_total") == without(first, "cache", "seconds_total")

    # One task run per computed training, none for reused ones (the later run's task run
    # reaching the server means the earlier runs' have too: events arrive in order).
    assert task_run_names(fixed_id, at_least=1) == ["sweep-after_both-0.5-seed0"]
    assert len(task_run_names(first_id, at_least=3)) == 3
    assert task_run_names(again_id) == []


def test_changed_inputs_train_again_and_a_grown_grid_reuses_its_cells(first_sweep):
    spec, _, _ = first_sweep
    longer, _ = run_flow(spec.model_copy(update={"epochs": 2}))
    assert longer["cache"]["computed"] == 3
    assert len(longer["configs"][0]["curves"]["loss"]) == 2
    grown, _ = run_flow(spec.model_copy(update={"rates": [0.0, 0.2, 0.5]}))
    assert (grown["cache"]["computed"], grown["cache"]["reused"]) == (1, 3)  # only rate 0.2


def test_the_sweep_cache_key_follows_the_training_rows(tiny_cache, tmp_path):
    workdir, ids, labels = tiny_cache
    spec = tiny_spec(workdir)
    directory = SweepStore.for_spec(spec).directory
    assert SweepStore.for_spec(tiny_spec(workdir, epochs=3)).directory == directory

    relabelled = [1 - labels[0], *labels[1:]]
    write_manifest(tmp_path / "relabelled.parquet", ids, relabelled, SPLITS)
    other = tiny_spec(workdir, manifest_path=tmp_path / "relabelled.parquet")
    assert SweepStore.for_spec(other).directory != directory
    # a manifest row without cached features is not trained on, so it changes nothing
    extra = [*ids, "f" * 64]
    write_manifest(tmp_path / "extra.parquet", extra, [*labels, 0], [*SPLITS, "train"])
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


def stat(mean: float, std: float = 0.0, n: int = 3) -> dict:
    return {"mean": mean, "std": std, "n": n}


def summary_of(rows: dict[tuple[float, str], tuple[float, float]], n_val: int = 100) -> dict:
    """A sweep summary with the given (validation accuracy, train-validation gap) per config."""
    configs = [
        {"rate": rate, "placement": placement, "seeds": 3,
         "validation_accuracy": stat(acc), "gap_accuracy": stat(gap)}
        for (rate, placement), (acc, gap) in rows.items()
    ]  # fmt: skip
    return {
        "selection_split": "validation", "split_sizes": {"validation": n_val}, "epochs": 5,
        "seeds": [0, 1, 2], "configs": configs,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("end_only", "every_layer", "expected"),
    [(0.90, 0.80, verdicts.SUPPORTED), (0.80, 0.805, verdicts.SUPPORTED),
     (0.70, 0.80, verdicts.REFUTED)],
)  # fmt: skip
def test_c1_compares_end_only_with_every_layer(end_only, every_layer, expected):
    summary = summary_of({
        (0.0, "none"): (0.8, 0.1),
        (0.5, "after_dense2"): (end_only, 0.1),
        (0.5, "after_both"): (every_layer, 0.1),
    })  # fmt: skip
    assert verdicts.judge_c1(summary)["verdict"] == expected


def test_c4_and_f5_follow_the_numbers():
    best_is_p05 = summary_of({
        (0.0, "none"): (0.80, 0.15), (0.2, "after_dense2"): (0.82, 0.05),
        (0.5, "after_dense2"): (0.83, 0.04), (0.5, "after_both"): (0.90, 0.02),
    })  # fmt: skip
    context = {"rate": 0.2, "placement": "after_dense2"}
    assert verdicts.judge_c4(best_is_p05, context)["verdict"] == verdicts.SUPPORTED
    assert verdicts.judge_f5(best_is_p05, context)["verdict"] == verdicts.SUPPORTED
    p05_second = summary_of({
        (0.0, "none"): (0.80, 0.15), (0.2, "after_dense2"): (0.95, 0.15),
        (0.5, "after_dense2"): (0.83, 0.04), (0.5, "after_both"): (0.88, 0.02),
    })  # fmt: skip
    assert verdicts.judge_c4(p05_second, context)["verdict"] == verdicts.CORRECTED
    assert verdicts.judge_f5(p05_second, context)["verdict"] == verdicts.REFUTED  # same gap
    p05_worst = summary_of({
        (0.0, "none"): (0.80, 0.15), (0.2, "after_dense2"): (0.70, 0.02),
        (0.5, "after_dense2"): (0.83, 0.04), (0.5, "after_both"): (0.60, 0.02),
    })  # fmt: skip
    assert verdicts.judge_c4(p05_worst, context)["verdict"] == verdicts.REFUTED
    assert verdicts.judge_f5(p05_worst, context)["verdict"] == verdicts.CORRECTED  # costs acc


def test_a_sweep_that_beats_no_baseline_says_so():
    summary = summary_of({
        (0.0, "none"): (0.5, 0.0), (0.5, "after_dense2"): (0.5, 0.0),
        (0.5, "after_both"): (0.5, 0.0),
    })  # fmt: skip
    context = {"rate": 0.5, "placement": "after_dense2"}
    assert "Uninformative" not in verdicts.judge_c1(summary)["explanation"]
    summary.update(beats_majority=False, majority_accuracy=0.5)
    for judged in (verdicts.judge_c1(summary), verdicts.judge_c4(summary, context),
                   verdicts.judge_f5(summary, context)):  # fmt: skip
        assert "Uninformative on this data" in judged["explanation"]


def test_a_sweep_spec_rejects_unknown_placements_and_impossible_rates():
    from pydantic import ValidationError

    base = {"cache_dir": "/c", "manifest_path": "/m", "n_classes": 2, "feature_shape": (2, 2, 8)}
    for bad in ({"placements": ["after_dense"]}, {"rates": [1.0]}, {"epochs": 0}):
        with pytest.raises(ValidationError):
            sweep.SweepSpec(**base, **bad)
