"""Benchmark of head training (issue 4): cached features vs the seed's way, streaming vs memory.

    python bench/train.py                       # 512 images, batch 32, 128 and 256, about 4 minutes
    python bench/train.py --images 1024 --repeats 5 --batch-sizes 32 --out results.json

In one run, on the same generated JPEG files (demo textures at 300-500 px, quality 90),
ingested and extracted by the real stages (seeded random InceptionV3 cut at mixed7, 150 px,
float16 zstd cache, all images in the train split), with the seed's head (512, 1024,
Dropout 0.2, RMSprop 1e-4), for each batch size of `--batch-sizes`:
  (a) the seed's end-to-end epoch: the full model (frozen backbone + head) in `fit`, decoding
      and preprocessing the JPEGs from disk every epoch (`preprocess.image_dataset`);
  (b) an epoch of the head on cached features held in memory (`training.training_data`);
  (c) an epoch of the head streaming the same features from the Parquet cache through a
      bounded shuffle buffer (`--stream-budget-mb`, half of it for the buffer);
  (d) an epoch of the whole stage `train_head` (in memory) as the pipeline runs it: op
      determinism, TensorBoard scalars, checkpoints at most every 60 s (from history.json);
  (e) a lever the pipeline does not use: (b) with Keras's own RMSprop instead of the
      pipeline's `FusedRMSprop` (fused_rmsprop.py), to show what fusing the update gave.
All ways, the seed's included, use the pipeline's optimizer and input pipelines (tf.data
autotuning off: `inception_retrain/tf_data.py`).
Targets: a/b >= 20 on CPU, c/b <= 1.1. The first epoch of every model (tracing) is not
timed; b and c alternate epoch by epoch and a is timed between them, because the machine may
be shared: compare ratios, not absolute numbers. Besides wall time, each way's process CPU
time per epoch is reported (the work it does, less sensitive to other processes on the
machine, but blind to overlap: prefetching shows up in CPU time, not in wall time).
Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
from common import finish, machine, write_jpegs  # noqa: E402

BATCH = 32


def _seed_head():
    from inception_retrain.training.head_spec import HeadSpec

    return HeadSpec(hidden_units=(512, 1024), dropout_rate=0.2, learning_rate=1e-4)


CPU_TIMES: dict[str, list[float]] = {}


def timed_epoch(model, dataset, epoch: int, way: str | None = None) -> float:
    """Wall seconds of one epoch; its process CPU seconds go to CPU_TIMES[way]."""
    started, cpu = time.perf_counter(), time.process_time()
    model.fit(dataset, epochs=epoch + 1, initial_epoch=epoch, shuffle=False, verbose=0)
    if way is not None:
        CPU_TIMES.setdefault(way, []).append(time.process_time() - cpu)
    return time.perf_counter() - started


UNFUSED = "keras-rmsprop"


def epoch_data(split, epoch: int):
    """The split's dataset in the order of `epoch` (what fit.EpochOrder sets in the stage)."""
    split.epoch = epoch
    return split.dataset()


def seed_model(backbone, feature_shape):
    """The seed's full model: frozen backbone -> head, compiled as the seed does."""
    import keras

    from inception_retrain.training.fit import new_head
    from inception_retrain.training.head import compile_head

    head = new_head(feature_shape, 2, _seed_head(), seed=0)
    full = keras.Model(backbone.input, head(backbone.output), name="seed_model")
    return compile_head(full, 2, 1e-4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=4, help="timed epochs per way")
    parser.add_argument("--seed-epochs", type=int, default=2, help="timed seed's-way epochs")
    parser.add_argument("--stream-budget-mb", type=int, default=32)
    parser.add_argument(
        "--batch-sizes", type=lambda text: [int(b) for b in text.split(",")], default=[32, 128, 256]
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    from inception_retrain.config import RetrainConfig
    from inception_retrain.data.ingest import ingest
    from inception_retrain.features.backbone import load_backbone
    from inception_retrain.features.extraction import extract_features
    from inception_retrain.runs.run_folder import new_run_dir
    from inception_retrain.training.train import train_head
    from inception_retrain.training.training_data import IN_MEMORY

    info = machine()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-train-"))
    data = workdir / "data"
    if not data.is_dir():
        write_jpegs(data, args.images)
    config = RetrainConfig(
        data=str(data),
        workdir=workdir,
        weights="random:0",
        split_fractions=(1.0, 0.0, 0.0),
        epochs=1 + args.repeats,
        patience=0,
        device="cpu",
    )
    run_dir = new_run_dir(workdir)
    started = time.perf_counter()
    manifest = ingest(config.ingest, run_dir)
    cache = extract_features(manifest, config.extraction, run_dir)
    prepare_s = time.perf_counter() - started
    import pyarrow.parquet as pq

    rows = pq.read_table(manifest.path, filters=[("status", "=", "ok")]).sort_by("content_id")
    paths = rows.column("uri").to_pylist()
    labels = np.array(rows.column("label_index").to_pylist(), np.int32)
    n = len(paths)
    print(f"{n} images ingested and extracted in {prepare_s:.0f} s ({cache.dtype} cache)")

    backbone = load_backbone("random:0", "mixed7", 150)
    results = {
        "machine": info,
        "images": n,
        "cache_dtype": cache.dtype,
        "stream_budget_mb": args.stream_budget_mb,
        "by_batch_size": {},
    }
    for batch_size in args.batch_sizes:
        CPU_TIMES.clear()
        measured = measure_batch_size(args, batch_size, cache, manifest, backbone, paths, labels)
        results["by_batch_size"][str(batch_size)] = measured
        print_table(measured, n)

    # (d): the whole stage, with checkpoints and TensorBoard scalars, at the config's batch.
    stage = train_head(manifest, cache, config.training, new_run_dir(workdir))
    stage_history = json.loads(stage.history_path.read_text())
    stage_epoch = statistics.median(stage_history["seconds_per_epoch"][1:])
    in_memory = results["by_batch_size"].get(str(config.batch_size))
    results["train_head"] = {"batch_size": config.batch_size, "epoch_seconds": stage_epoch}
    line = f"(d) stage `train_head`, in memory, batch {config.batch_size}: {stage_epoch:.3f} s"
    if in_memory:
        ratio = stage_epoch / in_memory["median_epoch_seconds"][IN_MEMORY]
        results["train_head"]["over_in_memory"] = ratio
        line += f" per epoch, d/b = {ratio:.2f}"
    print(line)
    finish(results, args.out)


def measure_batch_size(args, batch_size, cache, manifest, backbone, paths, labels) -> dict:
    """(a), (b), (c) and (e) at one batch size, epochs alternating; see the docstring."""
    import keras
    import tensorflow as tf

    from inception_retrain.data.manifest import read_image_rows
    from inception_retrain.features.preprocess import image_dataset
    from inception_retrain.training.fit import new_head
    from inception_retrain.training.head import build_head
    from inception_retrain.training.training_data import IN_MEMORY, STREAMING, load_training_data

    # Like the seed's way, these run without op determinism; the stage (d) runs as it does
    # in the pipeline.
    keras.utils.set_random_seed(0)
    heads, splits = {}, {}
    for mode in (IN_MEMORY, STREAMING):
        loaded = load_training_data(
            cache.cache_dir,
            read_image_rows(manifest.path, "train").label_of(),
            {},
            batch_size=batch_size,
            seed=0,
            memory_budget_mb=args.stream_budget_mb,
            mode=mode,
        )
        splits[mode] = loaded.train
        heads[mode] = new_head(cache.feature_shape, 2, _seed_head(), seed=0)
        timed_epoch(heads[mode], epoch_data(splits[mode], 0), 0)  # trace, warm caches
    splits[UNFUSED] = splits[IN_MEMORY]
    heads[UNFUSED] = build_head(cache.feature_shape, 2, _seed_head())
    heads[UNFUSED].compile(
        keras.optimizers.RMSprop(1e-4), loss="binary_crossentropy", metrics=["accuracy"]
    )
    timed_epoch(heads[UNFUSED], epoch_data(splits[UNFUSED], 0), 0)

    # (a): the seed's way, decoding JPEGs every epoch.
    full = seed_model(backbone, cache.feature_shape)
    label_batches = tf.data.Dataset.from_tensor_slices(labels).batch(batch_size)

    def jpeg_epoch():
        return tf.data.Dataset.zip(image_dataset(paths, 150, batch_size), label_batches)

    timed_epoch(full, jpeg_epoch(), 0)

    times = {IN_MEMORY: [], STREAMING: [], UNFUSED: [], "seed": []}
    seed_every = max(1, args.repeats // max(1, args.seed_epochs))
    ways = [IN_MEMORY, STREAMING, UNFUSED]
    for epoch in range(1, args.repeats + 1):
        for way in ways[epoch % 3 :] + ways[: epoch % 3]:  # rotate who goes first
            data = epoch_data(splits[way], epoch)
            times[way].append(timed_epoch(heads[way], data, epoch, way))
        if len(times["seed"]) < args.seed_epochs and epoch % seed_every == 0:
            times["seed"].append(timed_epoch(full, jpeg_epoch(), epoch, "seed"))
        done = ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items() if v)
        print(f"batch {batch_size}, epoch {epoch}: {done}", flush=True)
    while len(times["seed"]) < args.seed_epochs:
        times["seed"].append(timed_epoch(full, jpeg_epoch(), 99, "seed"))

    median = {key: statistics.median(values) for key, values in times.items()}
    cpu = {key: statistics.median(values) for key, values in CPU_TIMES.items()}
    return {
        "batch_size": batch_size,
        "stream_buffer_rows": splits[STREAMING].buffer_rows,
        "epoch_seconds": times,
        "median_epoch_seconds": median,
        "min_epoch_seconds": {key: min(values) for key, values in times.items()},
        "seed_over_cached_min": min(times["seed"]) / min(times[IN_MEMORY]),
        "streaming_over_in_memory_min": min(times[STREAMING]) / min(times[IN_MEMORY]),
        "cpu_seconds": dict(CPU_TIMES),
        "median_cpu_seconds": cpu,
        "seed_over_cached": median["seed"] / median[IN_MEMORY],
        "seed_over_cached_cpu": cpu["seed"] / cpu[IN_MEMORY],
        "streaming_over_in_memory": median[STREAMING] / median[IN_MEMORY],
        "streaming_over_in_memory_cpu": cpu[STREAMING] / cpu[IN_MEMORY],
        "unfused_over_in_memory": median[UNFUSED] / median[IN_MEMORY],
        "unfused_over_in_memory_cpu": cpu[UNFUSED] / cpu[IN_MEMORY],
    }


def print_table(r: dict, n: int) -> None:
    m, b, c = r["median_epoch_seconds"], r["min_epoch_seconds"], r["median_cpu_seconds"]
    lines = [
        f"batch size {r['batch_size']}:",
        "| way (one epoch, same images) | wall s/epoch, median (best) | images/s | wall ratio, "
        "median (best) | CPU s/epoch | CPU ratio |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| (a) seed's way: full model in fit, JPEG decode | {m['seed']:.2f} ({b['seed']:.2f}) "
        f"| {n / m['seed']:.0f} | a/b = **{r['seed_over_cached']:.1f}x** "
        f"({r['seed_over_cached_min']:.1f}x) (target >= 20) "
        f"| {c['seed']:.2f} | **{r['seed_over_cached_cpu']:.1f}x** |",
        f"| (b) head on cached features, in memory | {m['in-memory']:.3f} "
        f"({b['in-memory']:.3f}) | {n / m['in-memory']:.0f} | 1 | {c['in-memory']:.3f} | 1 |",
        f"| (c) head streaming from Parquet (buffer {r['stream_buffer_rows']} rows) "
        f"| {m['streaming']:.3f} ({b['streaming']:.3f}) | {n / m['streaming']:.0f} "
        f"| c/b = **{r['streaming_over_in_memory']:.2f}** "
        f"({r['streaming_over_in_memory_min']:.2f}) (target <= 1.1) "
        f"| {c['streaming']:.3f} | **{r['streaming_over_in_memory_cpu']:.2f}** |",
        f"| (e) lever, not in the pipeline: (b) with Keras's unfused RMSprop "
        f"| {m[UNFUSED]:.3f} ({b[UNFUSED]:.3f}) | {n / m[UNFUSED]:.0f} "
        f"| e/b = {r['unfused_over_in_memory']:.2f} "
        f"| {c[UNFUSED]:.3f} | {r['unfused_over_in_memory_cpu']:.2f} |",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
