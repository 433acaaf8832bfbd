"""Benchmark of fine-tuning (issue 21): an epoch from the cached prefix against end to end.

    python bench/finetune.py                   # 256 images; about 10 minutes on 2 busy cores
    python bench/finetune.py --images 512 --repeats 3 --rss-sizes 256,1024 --out r.json

In one run, on generated JPEGs (`common.write_jpegs`: demo textures, 300-500 px, quality 90),
the seeded random InceptionV3 at 150 px, float16 zstd caches, the seed's head (512, 1024,
Dropout 0.2), batch 32, mixed7 unfrozen (its Conv2D layers trainable, BatchNormalization
frozen), SGD 1e-5 with momentum 0.9 (the stage's defaults):
  (a) epoch cost: one epoch of fine-tuning from the cached mixed6 features (held in memory,
      `training_data`, as the stage reads a cache that fits its budget) against the same
      epoch end to end: the JPEG files read and decoded at every step, as the seed's
      generator does (`preprocess.image_dataset`: decode, resize, scale), through the frozen
      prefix up to mixed6 and then the same block and head (`backbone_with_block`). Epochs
      alternate; the first epoch of each model (tracing) is not timed; ratio of the medians,
      wall and CPU. With it, the multiply-add bound for this mix, counted from the layers'
      shapes: (prefix forward + block and head forward and backward) / (block and head
      forward and backward), the backward pass counted as twice the forward (weight and
      input gradients; the input gradient of the block's first layers is not needed either
      way). Decoding is not in the bound, so the measured ratio may exceed it.
  (b) the cache options of issue item 2, per image: extracting mixed7 from the JPEGs,
      extracting mixed6 from them, and deriving mixed7 from the cached mixed6 rows (the
      block's forward pass over the cache, written as a cache); keeping both caches costs
      (mixed6 + mixed7) per new image, deriving costs (mixed6 + derive), both twice the disk.
  (c) peak RSS (VmHWM) of the fine-tune stage itself, streaming from the cache (a 16 MB
      memory budget), at two data sizes, each in a fresh process: it must stay flat.
Nothing here is a test; speeds depend on the machine and its load (recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
from common import finish, machine, write_jpegs  # noqa: E402

CACHED, END_TO_END = "cached prefix", "end to end"
STREAM_BUDGET_MB = 16


def config_for(data: Path, workdir: Path):
    from inception_retrain.config import RetrainConfig

    return RetrainConfig(
        data=str(data),
        workdir=workdir,
        weights="random:0",
        device="cpu",
        split_fractions=(1.0, 0.0, 0.0),  # every image trains: an epoch is all of them
        fine_tune="mixed7",
    )


def prepare(root: Path, images: int, name: str):
    """JPEGs, their manifest, the mixed6 cache and a fresh head: (config, manifest, prefix,
    head)."""
    from inception_retrain.data.ingest import ingest
    from inception_retrain.features.extraction import extract_features
    from inception_retrain.runs.run_folder import new_run_dir
    from inception_retrain.training.head import TrainedHead, build_head, save_head

    data = root / f"data-{name}"
    write_jpegs(data, images)
    config = config_for(data, root / f"work-{name}")
    run_dir = new_run_dir(config.workdir)
    manifest = ingest(config.ingest, run_dir)
    prefix = extract_features(manifest, config.prefix_extraction, run_dir / "fine-tune")
    path = run_dir / "head.keras"
    spec = config.training
    fingerprint = save_head(
        build_head(prefix.feature_shape, 2, spec.head, spec.seed), spec.head, 2, spec.seed, path
    )
    head = TrainedHead(
        head_path=path, history_path=path, fingerprint=fingerprint, device="cpu", training=spec
    )
    return config, manifest, prefix, head, run_dir


# --- (a) --------------------------------------------------------------------------------------


def macs(layers) -> int:
    """Multiply-adds per image of the Conv2D and Dense layers among `layers` (forward)."""
    import keras

    total = 0
    for layer in layers:
        if isinstance(layer, keras.layers.Conv2D):
            height, width, out = layer.output.shape[1:]
            total += height * width * out * int(np.prod(layer.kernel.shape[:-1]))
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return total


def multiply_add_bound(block, head, prefix_model) -> dict:
    block_layers = block.layers[1:]
    # The layers reading the block's input need no input gradient (it is data either way).
    first = {layer.name for layer in block_layers if layer.input is block.input}
    block_forward = macs(block_layers)
    input_grads = block_forward - macs([layer for layer in block_layers if layer.name in first])
    head_forward = macs(head.layers)
    prefix_forward = macs(prefix_model.layers)
    step = 2 * block_forward + input_grads + 3 * head_forward
    return {
        "prefix_forward_gmac": prefix_forward / 1e9,
        "block_forward_gmac": block_forward / 1e9,
        "head_forward_gmac": head_forward / 1e9,
        "cached_step_gmac": step / 1e9,
        "end_to_end_step_gmac": (prefix_forward + step) / 1e9,
        "bound": (prefix_forward + step) / step,
    }


def time_epochs(config, manifest, prefix, head, repeats: int) -> dict:
    import keras
    import tensorflow as tf

    from inception_retrain.data.manifest import read_image_rows
    from inception_retrain.dropout.chain import copy_head
    from inception_retrain.features.backbone_block import (
        backbone_with_block,
        load_block,
        prefix_model,
    )
    from inception_retrain.features.preprocess import image_dataset
    from inception_retrain.training.fine_tune import compile_fine_tune, fine_tune_model
    from inception_retrain.training.head import load_head
    from inception_retrain.training.training_data import load_training_data

    keras.utils.set_random_seed(0)
    spec, size, batch = config.fine_tuning, config.image_size, config.batch_size
    rows = read_image_rows(manifest.path, "train")
    split = load_training_data(
        prefix.cache_dir, rows.label_of(), {}, batch_size=batch, seed=0, memory_budget_mb=4096
    ).train
    block = load_block(config.weights, spec.prefix, spec.layer, size)
    trained = load_head(head.head_path)
    backbone = backbone_with_block(config.weights, spec.layer, size, block, trainable=True)
    models = {
        CACHED: compile_fine_tune(fine_tune_model(block, copy_head(trained)), 2, spec),
        END_TO_END: compile_fine_tune(
            keras.Model(backbone.input, copy_head(trained)(backbone.output)), 2, spec
        ),
    }
    labels = tf.data.Dataset.from_tensor_slices(np.asarray(rows.label_indices, np.int32))

    def data(name: str, epoch: int):
        if name == CACHED:
            split.epoch = epoch
            return split.dataset()
        images = image_dataset(rows.uris, size, batch)  # the files, read again every epoch
        return tf.data.Dataset.zip(images, labels.batch(batch))

    times: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    for epoch in range(repeats + 1):
        names = list(models) if epoch % 2 == 0 else list(models)[::-1]
        for name in names:
            started, cpu_start = time.perf_counter(), time.process_time()
            dataset = data(name, epoch)
            models[name].fit(
                dataset, epochs=epoch + 1, initial_epoch=epoch, shuffle=False, verbose=0
            )
            if epoch:  # epoch 0 traces
                times[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - cpu_start)
        if epoch:
            print(f"epoch {epoch}: " + ", ".join(f"{n} {t[-1]:.1f} s" for n, t in times.items()))
    median = {name: statistics.median(values) for name, values in times.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    bound = multiply_add_bound(block, trained, prefix_model(backbone, spec.prefix))
    found = {
        "train_images": len(rows),
        "batch_size": batch,
        "seconds": times,
        "cpu_seconds": cpu,
        "median_seconds": median,
        "median_cpu_seconds": median_cpu,
        "end_to_end_over_cached": median[END_TO_END] / median[CACHED],
        "end_to_end_over_cached_cpu": median_cpu[END_TO_END] / median_cpu[CACHED],
        "multiply_adds": bound,
    }
    print(
        f"(a) fine-tuning epoch of {len(rows)} images: cached prefix {median[CACHED]:.1f} s, "
        f"end to end {median[END_TO_END]:.1f} s: {found['end_to_end_over_cached']:.2f}x "
        f"(CPU {found['end_to_end_over_cached_cpu']:.2f}x); multiply-add bound "
        f"{bound['bound']:.2f}x ({bound['end_to_end_step_gmac']:.3f} / "
        f"{bound['cached_step_gmac']:.3f} GMAC per image)"
    )
    return found


# --- (b) --------------------------------------------------------------------------------------


def time_cache_options(config, manifest, prefix, scratch: Path) -> dict:
    """Per image: extract mixed7, extract mixed6 (fresh cache roots), derive mixed7 from the
    cached mixed6 rows."""
    from inception_retrain.data.manifest import read_image_rows
    from inception_retrain.features import feature_parts
    from inception_retrain.features.backbone import inference_function
    from inception_retrain.features.backbone_block import load_block
    from inception_retrain.features.extraction import extract_features

    n = len(read_image_rows(manifest.path))
    seconds = {}
    for name, spec in (("extract mixed7", config.extraction), ("extract mixed6", None)):
        spec = spec or config.prefix_extraction
        fresh = spec.model_copy(update={"cache_root": scratch / name.replace(" ", "-")})
        cache = extract_features(manifest, fresh, scratch / f"run-{name.replace(' ', '-')}")
        assert cache.computed == n
        seconds[name] = json.loads(cache.report_path.read_text())["compute_seconds"]

    block = load_block(config.weights, "mixed6", "mixed7", config.image_size)
    infer = inference_function(block, output_dtype=config.feature_dtype)
    schema = feature_parts.feature_schema(tuple(block.output.shape[1:]), config.feature_dtype, {})
    wanted = read_image_rows(manifest.path).label_of()
    target = scratch / "derived-mixed7"
    started = time.perf_counter()
    derived = 0
    for ids, values, labels in feature_parts.iter_rows(prefix.cache_dir, wanted, 256, None):
        features = np.asarray(infer(values.astype(np.float32)))
        feature_parts.write_part(target, schema, ids, labels, ["train"] * len(ids), features)
        derived += len(ids)
    seconds["derive mixed7 from cached mixed6"] = time.perf_counter() - started
    per_image = {name: value / n for name, value in seconds.items()}
    keep_both = per_image["extract mixed6"] + per_image["extract mixed7"]
    derive = per_image["extract mixed6"] + per_image["derive mixed7 from cached mixed6"]
    found = {
        "images": n,
        "seconds": seconds,
        "seconds_per_image": per_image,
        "keep_both_per_new_image": keep_both,
        "derive_per_new_image": derive,
        "keep_both_over_derive": keep_both / derive,
        "derived_rows": derived,
    }
    print(
        f"(b) per image: extract mixed7 {per_image['extract mixed7'] * 1e3:.1f} ms, extract "
        f"mixed6 {per_image['extract mixed6'] * 1e3:.1f} ms, derive mixed7 from cached mixed6 "
        f"{per_image['derive mixed7 from cached mixed6'] * 1e3:.1f} ms: a new image costs "
        f"{keep_both * 1e3:.1f} ms keeping both caches, {derive * 1e3:.1f} ms deriving "
        f"({found['keep_both_over_derive']:.2f}x)"
    )
    return found


# --- (c) --------------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM: its own address space, not a parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def rss_child(arguments: str) -> None:
    """Child mode: one epoch of the fine-tune stage, streaming; peak RSS as JSON."""
    from inception_retrain.data.manifest import Manifest
    from inception_retrain.features.feature_cache import FeatureCache
    from inception_retrain.training.fine_tune import fine_tune
    from inception_retrain.training.head import TrainedHead

    given = json.loads(Path(arguments).read_text())
    head = TrainedHead.model_validate(given["head"])
    training = head.training.model_copy(update={"memory_budget_mb": STREAM_BUDGET_MB})
    head = head.model_copy(update={"training": training})
    spec = given["spec"]
    from inception_retrain.training.fine_tune_spec import FineTuneSpec

    started = time.perf_counter()
    tuned = fine_tune(
        Manifest.model_validate(given["manifest"]),
        FeatureCache.model_validate(given["prefix"]),
        head,
        FineTuneSpec.model_validate({**spec, "epochs": 1}),
        Path(given["run_dir"]),
    )
    history = json.loads(tuned.history_path.read_text())
    print(
        json.dumps(
            {
                "peak_rss_mib": peak_rss_mib(),
                "data_mode": history["data_mode"],
                "n_train": history["n_train"],
                "wall_s": time.perf_counter() - started,
            }
        )
    )


def measure_rss(root: Path, sizes: list[int]) -> list[dict]:
    results = []
    for size in sizes:
        config, manifest, prefix, head, run_dir = prepare(root, size, f"rss-{size}")
        given = root / f"rss-{size}.json"
        given.write_text(
            json.dumps(
                {
                    "manifest": manifest.model_dump(mode="json"),
                    "prefix": prefix.model_dump(mode="json"),
                    "head": head.model_dump(mode="json"),
                    "spec": config.fine_tuning.model_dump(mode="json"),
                    "run_dir": str(run_dir),
                }
            )
        )
        done = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(given)],
            capture_output=True,
            text=True,
            check=True,
        )
        found = json.loads(done.stdout.strip().splitlines()[-1])
        results.append({"images": size, **found})
        print(f"(c) {size} images: peak RSS {found['peak_rss_mib']:.0f} MiB ({found['data_mode']})")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="images of (a) and (b)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per way")
    parser.add_argument("--rss-sizes", default="256,1024", help="two sizes for (c); empty: skip")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp folder)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return

    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    root.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "images": args.images}
    results["command"] = "python bench/finetune.py " + " ".join(sys.argv[1:])
    config, manifest, prefix, head, _ = prepare(root, args.images, "main")
    results["epochs"] = time_epochs(config, manifest, prefix, head, args.repeats)
    results["cache_options"] = time_cache_options(config, manifest, prefix, root / "options")
    sizes = [int(s) for s in args.rss_sizes.split(",") if s]
    results["rss"] = measure_rss(root, sizes)
    if not args.workdir:
        shutil.rmtree(root)
    finish(results, args.out)


if __name__ == "__main__":
    main()
