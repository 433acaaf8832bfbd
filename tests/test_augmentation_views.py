"""Augmented views as cache rows, and training on them: real images (the demo generator's),
real manifests, the real InceptionV3 with random weights at 75 px (mixed7: 2x2x768), real
Parquet parts, a real dask.distributed LocalCluster for the sharded path.

What they check: views are rows of the train split only (N x (K + 1) train rows, N for the
other splits); the same view is the same bytes in two runs (two caches) and differs from the
original; reruns compute nothing, raising K computes exactly the new views, a new image its
K + 1 rows (or 1 outside train); a policy change gives a new fingerprint and new rows, and
`cache prune` removes the old policy's views only; a shard of views run twice writes one part,
and shards (in this process and on a cluster) cache what one process caches; each epoch draws
one row per image, the same rows in memory and streaming; the memory budget counts the views;
training with views is reproducible under one seed.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import keras
import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from inception_retrain.cli.main import app
from inception_retrain.config import RetrainConfig
from inception_retrain.data.demo_data import CLASSES, demo_image
from inception_retrain.data.ingest import ingest
from inception_retrain.data.manifest import read_image_rows
from inception_retrain.features.augmentation import AugmentPolicy
from inception_retrain.features.extraction import (
    extract_features,
    finish_extraction,
    plan_extraction,
)
from inception_retrain.features.feature_compute import compute_shard
from inception_retrain.features.feature_parts import load_rows, parts, schema_metadata
from inception_retrain.features.view_cache import list_views, views_dir_for
from inception_retrain.training.head_spec import HeadSpec
from inception_retrain.training.train import train_head
from inception_retrain.training.training_data import (
    IN_MEMORY,
    STREAMING,
    InMemorySplit,
    epoch_order,
    load_training_data,
)

K = 4


def write_images(folder: Path, indices: range) -> None:
    for index in indices:
        label = CLASSES[index % 2]
        data, ext = demo_image(label, index, 0)
        path = folder / label / f"img-{index:03d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def small_config(data: Path, workdir: Path, **overrides) -> RetrainConfig:
    values = {
        "data": str(data),
        "workdir": str(workdir),
        "weights": "random:0",
        "image_size": 75,
        "split_fractions": (0.5, 0.2, 0.3),
        "head": HeadSpec(hidden_units=(16, 16)),
        "epochs": 2,
        "batch_size": 8,
        "patience": 0,
        "feature_dtype": "float32",
        "augment_views": K,
    }
    return RetrainConfig(**{**values, **overrides})


class Runs:
    """Ingest + extract into numbered run folders."""

    def __init__(self, root: Path):
        self.root, self.count = root, 0

    def extract(self, config: RetrainConfig):
        self.count += 1
        run_dir = self.root / f"run-{self.count}"
        manifest = ingest(config.ingest, run_dir)
        cache = extract_features(manifest, config.extraction, run_dir)
        return manifest, cache, json.loads((run_dir / "extract.json").read_text())


def keys_in_parts(folder) -> list:
    """Every row key over the parts of a folder, with repetitions."""
    found = []
    for part in parts(folder):
        table = pq.read_table(part)
        ids = table["content_id"].to_pylist()
        if "view" in table.column_names:
            found += list(zip(ids, table["view"].to_pylist(), strict=True))
        else:
            found += ids
    return found


def view_features(views_dir, manifest_path: Path) -> tuple[list, np.ndarray]:
    """(keys, raw bits) of every view of the train split, sorted."""
    train = read_image_rows(manifest_path, "train").label_of()
    wanted = {(cid, v): label for cid, label in train.items() for v in range(1, K + 1)}
    keys, features, _ = load_rows(views_dir, wanted)
    return keys, features.view(np.uint32)


@pytest.fixture(scope="module")
def views_run(small_demo_dir, tmp_path_factory):
    """One extraction of the small demo with K = 4 views (75 px, float32)."""
    root = tmp_path_factory.mktemp("views")
    config = small_config(small_demo_dir, root / "work")
    manifest, cache, report = Runs(root).extract(config)
    return config, manifest, cache, report


def test_views_are_rows_of_the_train_split_only(views_run):
    config, manifest, cache, report = views_run
    rows = read_image_rows(manifest.path)
    train = read_image_rows(manifest.path, "train")
    n, n_train = len(rows), len(train)
    assert 0 < n_train < n
    originals = keys_in_parts(cache.cache_dir)
    views = keys_in_parts(cache.views.views_dir)
    assert sorted(originals) == sorted(rows.content_ids)  # N rows, every split, once
    assert sorted(views) == sorted((cid, v) for cid in train.content_ids for v in range(1, K + 1))
    per_split = Counter(rows.splits[rows.content_ids.index(cid)] for cid, _ in views)
    assert set(per_split) == {"train"}  # validation and test never get views
    for split in ("train", "validation", "test"):
        ids = read_image_rows(manifest.path, split).content_ids
        cached = sum(1 for cid in originals if cid in ids) + sum(1 for c, _ in views if c in ids)
        assert cached == len(ids) * (K + 1 if split == "train" else 1)
    assert cache.views.views_dir == views_dir_for(cache.cache_dir, config.augment.fingerprint())
    assert (cache.views.computed, cache.views.reused, cache.views.per_image) == (n_train * K, 0, K)
    section = report["views"]
    assert section["computed"] == section["wanted"] == section["cached_rows"] == n_train * K
    assert section["fingerprint"] == config.augment.fingerprint() and section["per_image"] == K
    metadata = schema_metadata(pq.read_schema(parts(cache.views.views_dir)[0]))
    assert metadata["views"] == config.augment.record()  # the key's policy, in the part


def test_the_same_view_is_the_same_bytes_in_two_runs_and_differs_from_the_original(
    views_run, tmp_path
):
    config, manifest, cache, _ = views_run
    other = small_config(Path(config.data), tmp_path / "work", extract_batch_size=5)
    _, again, _ = Runs(tmp_path).extract(other)  # another cache, other batches
    assert again.views.views_dir != cache.views.views_dir
    keys, first = view_features(cache.views.views_dir, manifest.path)
    keys_again, second = view_features(again.views.views_dir, manifest.path)
    assert keys == keys_again and np.array_equal(first, second)
    train = read_image_rows(manifest.path, "train").label_of()
    ids, originals, _ = load_rows(cache.cache_dir, train)
    by_key = dict(zip(keys, first, strict=True))
    for cid, original in zip(ids, originals.view(np.uint32), strict=True):
        views = [by_key[(cid, v)] for v in range(1, K + 1)]
        assert all(not np.array_equal(view, original) for view in views)
        assert not np.array_equal(views[0], views[1])


def test_reruns_compute_nothing_raised_k_the_new_views_new_images_their_rows(tmp_path):
    data = tmp_path / "data"
    write_images(data, range(16))
    runs = Runs(tmp_path)
    config = small_config(data, tmp_path / "work", augment_views=2)
    manifest, first, _ = runs.extract(config)
    n_train = len(read_image_rows(manifest.path, "train"))
    assert (first.computed, first.views.computed) == (16, 2 * n_train)

    _, again, report = runs.extract(config)
    assert (again.computed, again.views.computed, again.views.reused) == (0, 0, 2 * n_train)
    assert report["views"]["quarantined"] == 0

    raised = config.model_copy(update={"augment_views": 4})
    manifest, more, _ = runs.extract(raised)
    assert (more.computed, more.views.computed, more.views.reused) == (0, 2 * n_train, 2 * n_train)
    keys = keys_in_parts(more.views.views_dir)
    train = read_image_rows(manifest.path, "train").content_ids
    assert sorted(keys) == sorted((cid, v) for cid in train for v in range(1, 5))  # no repeat

    write_images(data, range(16, 22))
    manifest, grown, _ = runs.extract(raised)
    new_train = len(read_image_rows(manifest.path, "train")) - n_train
    assert grown.computed == 6 and grown.views.computed == 4 * new_train
    # the originals of the 6 and the K views of those in train: K + 1 rows per train image
    assert len(keys_in_parts(grown.views.views_dir)) == 4 * (n_train + new_train)


def test_a_policy_change_gives_new_views_and_prune_removes_the_old_ones(tmp_path):
    data = tmp_path / "data"
    write_images(data, range(10))
    runs = Runs(tmp_path)
    config = small_config(data, tmp_path / "work", augment_views=1)
    _, old, _ = runs.extract(config)
    changed = config.model_copy(update={"augment": AugmentPolicy(rotation_degrees=5.0)})
    assert changed.augment.fingerprint() != config.augment.fingerprint()
    manifest, new, _ = runs.extract(changed)
    n_train = len(read_image_rows(manifest.path, "train"))
    assert new.computed == 0 and (new.views.computed, new.views.reused) == (n_train, 0)
    assert new.cache_dir == old.cache_dir and new.views.views_dir != old.views.views_dir
    policies = {config.augment.fingerprint(), changed.augment.fingerprint()}
    assert {v["fingerprint"] for v in list_views(new.cache_dir)} == policies
    workdir = ["--workdir", str(tmp_path / "work")]
    listed = CliRunner().invoke(app, ["cache", "ls", *workdir])
    assert listed.exit_code == 0 and f"{2 * n_train} (2 policies)" in listed.output
    result = CliRunner().invoke(app, ["cache", "prune", *workdir])
    assert result.exit_code == 0, result.output
    assert f"removed views of policy {config.augment.fingerprint()}" in result.output
    assert not Path(old.views.views_dir).exists() and Path(new.views.views_dir).is_dir()
    assert len(keys_in_parts(new.cache_dir)) == 10  # the originals stay
    _, after, _ = runs.extract(changed)  # the kept policy's views are intact
    assert (after.views.computed, after.views.reused) == (0, n_train)


def test_shards_of_views_cache_what_one_process_caches_and_a_repeat_writes_one_part(
    views_run, tmp_path
):
    config, manifest, single, _ = views_run
    sharded = config.model_copy(update={"workdir": tmp_path / "work", "shard_rows": 16})
    plan = plan_extraction(manifest, sharded.extraction)
    n_train = len(read_image_rows(manifest.path, "train"))
    view_shards = [s for s in plan.shards if s.views]
    assert plan.view_todo == n_train * K and len(view_shards) >= 2
    first = compute_shard(view_shards[0], plan.job)
    again = compute_shard(view_shards[0], plan.job)  # a retry, or a second worker
    assert first.part == again.part and first.of_views
    assert first.computed == again.computed == len(view_shards[0].views)
    assert len(parts(plan.job.views_dir)) == 1
    results = [again] + [compute_shard(s, plan.job) for s in plan.shards if s != view_shards[0]]
    cache = finish_extraction(plan, results, manifest, tmp_path / "run")
    assert (cache.views.computed, cache.views.reused) == (n_train * K, 0)
    keys = keys_in_parts(cache.views.views_dir)
    assert len(keys) == len(set(keys)) == n_train * K
    expected = view_features(single.views.views_dir, manifest.path)
    got = view_features(cache.views.views_dir, manifest.path)
    assert expected[0] == got[0] and np.array_equal(expected[1], got[1])
    assert plan_extraction(manifest, sharded.extraction).shards == []  # nothing left


@pytest.mark.slow
def test_a_local_cluster_computes_the_views(views_run, tmp_path):
    from dask.distributed import Client, LocalCluster

    config, manifest, single, _ = views_run
    sharded = config.model_copy(update={"workdir": tmp_path / "work", "shard_rows": 24})
    plan = plan_extraction(manifest, sharded.extraction)
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
    )
    with cluster, Client(cluster) as client:
        futures = client.map(compute_shard, plan.shards, job=plan.job, threads=1, pure=False)
        results = client.gather(futures)
    assert any(r.of_views for r in results)
    cache = finish_extraction(plan, results, manifest, tmp_path / "run")
    expected = view_features(single.views.views_dir, manifest.path)
    got = view_features(cache.views.views_dir, manifest.path)
    assert expected[0] == got[0] and np.array_equal(expected[1], got[1])


# --- training on the views -----------------------------------------------------------------


def test_each_epoch_draws_one_row_per_image_reproducibly():
    n, views = 50, 3
    features = np.arange(n * (views + 1), dtype=np.float32).reshape(-1, 1)
    image_of = np.concatenate([np.arange(n), np.repeat(np.arange(n), views)])
    view_rows = (n + np.arange(n * views)).reshape(n, views)
    view_rows[::5, 2] = -1  # some images lack view 3
    split = InMemorySplit(features, image_of % 2, 8, seed=3, view_rows=view_rows)
    plain = InMemorySplit(features[:n], image_of[:n] % 2, 8, seed=3)
    assert split.n == plain.n == n and split.n_batches == plain.n_batches
    orders = [split.order(epoch) for epoch in range(6)]
    for epoch, rows in enumerate(orders):
        assert sorted(image_of[rows]) == list(range(n))  # each image once
        assert list(image_of[rows]) == list(epoch_order(n, 3, epoch))  # the plain order
        assert not set(rows) & {n + i * views + 2 for i in range(0, n, 5)}  # not cached
        assert np.array_equal(rows, split.order(epoch))  # a pure function of (seed, epoch)
    drawn = np.concatenate(orders)
    assert (drawn < n).any() and (drawn >= n).any()  # originals and views both drawn
    assert not np.array_equal(orders[0], orders[1])
    assert np.array_equal(plain.order(2), epoch_order(n, 3, 2))


def _epoch_rows(split, epoch: int) -> np.ndarray:
    split.epoch = epoch
    batches = [x.numpy() for x, _ in split.dataset()]
    rows = np.concatenate(batches).reshape(split.n, -1)
    return rows[np.lexsort(rows.T[::-1])]


def test_streaming_trains_on_the_rows_in_memory_draws_and_the_budget_counts_views(views_run):
    _, manifest, cache, _ = views_run
    train = read_image_rows(manifest.path, "train").label_of()
    val = read_image_rows(manifest.path, "validation").label_of()
    common = {"batch_size": 8, "seed": 5, "views_dir": cache.views.views_dir}
    memory = load_training_data(
        cache.cache_dir, train, val, memory_budget_mb=64, views_per_image=K, **common
    )
    assert memory.mode == IN_MEMORY and memory.view_rows == len(train) * K
    # 1 MB holds the originals (12 KB a row) but not K + 1 rows per train image
    bytes_all = (len(train) * (K + 1) + len(val)) * memory.bytes_per_row
    assert (len(train) + len(val)) * memory.bytes_per_row <= 2**20 < bytes_all
    budget = {"memory_budget_mb": 1}
    streamed = load_training_data(
        cache.cache_dir, train, val, views_per_image=K, **budget, **common
    )
    assert streamed.mode == STREAMING
    assert load_training_data(cache.cache_dir, train, val, **budget, **common).mode == IN_MEMORY
    for epoch in (0, 1):
        assert np.array_equal(_epoch_rows(memory.train, epoch), _epoch_rows(streamed.train, epoch))
    assert not np.array_equal(_epoch_rows(memory.train, 0), _epoch_rows(memory.train, 1))
    _, originals, _ = load_rows(cache.cache_dir, train)
    originals = originals.reshape(len(train), -1)
    drawn = _epoch_rows(memory.train, 0)
    assert not np.array_equal(drawn, originals[np.lexsort(originals.T[::-1])])  # views drawn


def test_training_with_views_is_reproducible_under_one_seed(views_run, tmp_path):
    config, manifest, cache, _ = views_run
    weights = []
    for name in ("a", "b"):
        head = train_head(manifest, cache, config.training, tmp_path / name)
        weights.append(keras.saving.load_model(head.head_path).get_weights())
        history = json.loads(head.history_path.read_text())
        assert history["n_train_view_rows"] == cache.views.computed
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))
    plain = cache.model_copy(update={"views": None})
    head = train_head(manifest, plain, config.training, tmp_path / "plain")
    without = keras.saving.load_model(head.head_path).get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(weights[0], without, strict=True))
