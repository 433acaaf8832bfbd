"""Benchmark of augmented views (issue 14): what K cached views cost, and what they buy.

    python bench/augment.py                 # demo data, K = 4, 5 seeds; about 6 minutes here
    python bench/augment.py --views 4 --seeds 5 --small-per-class 30 --repeats 3 --out r.json

In one run, on the demo data (`inception-retrain demo-data`: 200 images per class, 80/10/10
splits by content), the seeded random InceptionV3 cut at mixed7 at 150 px, a float16 zstd
cache, the seed's head (512, 1024, Dropout 0.2, RMSprop 1e-4), batch 32, the default policy:
  (a) extraction cost: the train split's originals (one row per image) against its K views
      (`preprocess.augmented_dataset`: one decode per image, K distortions), each computed by
      the pipeline's own loop (`feature_compute.compute_missing`) into a fresh folder,
      alternating, `--repeats` times after one untimed warm-up of each;
  (b) epoch cost: an epoch of the head on the cache with the K views (every image one of its
      K + 1 rows, in memory), against an end-to-end augmented epoch: the full model (frozen
      backbone + head) in `fit` with Keras's random layers of the same policy
      (`augmentation.keras_layers`) drawing new distortions on the fly, the JPEGs decoded and
      resized every epoch; and the cached epoch without views (K = 0). Epochs alternate; the
      first epoch of every model (tracing) is not timed;
  (c) the paired effect (`augmentation_effect.measure_effect`, as a run reports it): K = 0
      against K over `--seeds` seeds, with the run's training (up to 10 epochs, early stopping
      with patience 3): test accuracy, log loss, ECE and the overfitting gap with 95% t
      intervals; on the demo data, and on a small-data case: the same validation and test
      images with the train split cut to `--small-per-class` images per class (the cache's
      rows and views are reused: same content).
Both ways of (a) and (b) use the pipeline's input settings (tf.data autotuning off). With
random backbone weights, (c) says what views do to a head on random features, not on ImageNet
features. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import fields
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
from common import finish, machine  # noqa: E402

CACHED, CACHED_PLAIN, END_TO_END = "cached views", "cached, no views", "end to end"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=4, help="K, views per train image")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the paired effect")
    parser.add_argument("--per-class", type=int, default=200, help="demo images per class")
    parser.add_argument("--small-per-class", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs / epochs per way")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    from inception_retrain.config import RetrainConfig
    from inception_retrain.data.demo_data import write_demo_data
    from inception_retrain.data.ingest import ingest
    from inception_retrain.evaluation.augmentation_effect import measure_effect
    from inception_retrain.features.extraction import extract_features
    from inception_retrain.runs.run_folder import new_run_dir

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-augment-"))
    write_demo_data(workdir / "demo", per_class=args.per_class)
    config = RetrainConfig(
        data=str(workdir / "demo"),
        workdir=workdir / "work",
        weights="random:0",
        device="cpu",
        augment_views=args.views,
        augment_seeds=args.seeds,
    )
    results = {"machine": machine(), "views": args.views, "policy": config.augment.record()}
    started = time.perf_counter()
    run_dir = new_run_dir(config.workdir)
    manifest = ingest(config.ingest, run_dir)
    cache = extract_features(manifest, config.extraction, run_dir)
    print(
        f"demo: {cache.computed} images, {cache.views.computed} views extracted in "
        f"{time.perf_counter() - started:.0f} s"
    )

    results["extraction"] = time_extraction(manifest, config, args, workdir / "scratch")
    results["epochs"] = time_epochs(manifest, cache, config, args)

    results["effect"] = {}
    small = small_data(manifest, workdir / "small", args.small_per_class)
    for name, data in (("demo", config.data), ("small", str(small))):
        case = config.model_copy(update={"data": data})
        run_dir = new_run_dir(case.workdir)
        case_manifest = ingest(case.ingest, run_dir)
        case_cache = extract_features(case_manifest, case.extraction, run_dir)
        effect = measure_effect(case_manifest, case_cache, case.training, case.augment_seeds)
        results["effect"][name] = effect.model_dump(mode="json")
        print_effect(name, effect)
    finish(results, args.out)


def time_extraction(manifest, config, args, scratch: Path) -> dict:
    """(a): the train split's originals against its K views, fresh folders, alternating."""
    from inception_retrain.data.manifest import ImageRows, read_image_rows
    from inception_retrain.features.backbone import inference_function, load_backbone
    from inception_retrain.features.feature_compute import compute_missing
    from inception_retrain.features.feature_parts import feature_schema

    k = args.views
    rows = read_image_rows(manifest.path, "train")
    columns = [getattr(rows, field.name) for field in fields(rows)]
    jobs = ImageRows(*([value for value in column for _ in range(k)] for column in columns))
    views = [view for _ in rows.content_ids for view in range(1, k + 1)]
    backbone = load_backbone(config.weights, config.layer, config.image_size)
    shape = tuple(backbone.output_shape[1:])
    infer = inference_function(backbone, output_dtype=config.feature_dtype)
    schema = feature_schema(shape, config.feature_dtype, {})
    view_schema = feature_schema(shape, config.feature_dtype, {}, config.augment.record())
    ways = {
        "originals": lambda folder, n: compute_missing(
            backbone,
            take(rows, n),
            folder,
            schema,
            image_size=config.image_size,
            batch_size=config.extract_batch_size,
            infer=infer,
        ),
        "views": lambda folder, n: compute_missing(
            backbone,
            take(jobs, n * k),
            folder,
            view_schema,
            image_size=config.image_size,
            batch_size=config.extract_batch_size,
            infer=infer,
            views=views[: n * k],
            policy=config.augment,
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    for repeat in range(args.repeats + 1):
        order = list(ways) if repeat % 2 == 0 else list(ways)[::-1]
        for name in order:
            folder = scratch / f"{name}-{repeat}"
            shutil.rmtree(folder, ignore_errors=True)
            n = 32 if repeat == 0 else len(rows)  # repeat 0: warm-up (traces, caches)
            wall, cpu_start = time.perf_counter(), time.process_time()
            result = ways[name](folder, n)
            if repeat and result.computed == n * (k if name == "views" else 1):
                times[name].append(time.perf_counter() - wall)
                cpu[name].append(time.process_time() - cpu_start)
            shutil.rmtree(folder, ignore_errors=True)
        done = ", ".join(f"{name} {t[-1]:.1f} s" for name, t in times.items() if t)
        print(f"extraction {repeat}: {done}")
    median = {name: statistics.median(values) for name, values in times.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    found = {
        "train_images": len(rows),
        "views_per_image": k,
        "seconds": times,
        "cpu_seconds": cpu,
        "median_seconds": median,
        "median_cpu_seconds": median_cpu,
        "views_over_originals": median["views"] / median["originals"],
        "views_over_originals_cpu": median_cpu["views"] / median_cpu["originals"],
        "per_view_over_per_original": median["views"] / median["originals"] / k,
        "per_view_over_per_original_cpu": median_cpu["views"] / median_cpu["originals"] / k,
    }
    print(
        f"(a) extraction of {len(rows)} train images: originals {median['originals']:.1f} s, "
        f"{k} views {median['views']:.1f} s: {found['views_over_originals']:.2f}x in total, "
        f"{found['per_view_over_per_original']:.2f}x per row "
        f"(CPU {found['per_view_over_per_original_cpu']:.2f}x)"
    )
    return found


def take(rows, n: int):
    from inception_retrain.data.manifest import ImageRows

    return ImageRows(*(getattr(rows, field.name)[:n] for field in fields(rows)))


def timed_epoch(model, dataset, epoch: int, cpu: list[float]) -> float:
    started, cpu_start = time.perf_counter(), time.process_time()
    model.fit(dataset, epochs=epoch + 1, initial_epoch=epoch, shuffle=False, verbose=0)
    cpu.append(time.process_time() - cpu_start)
    return time.perf_counter() - started


def time_epochs(manifest, cache, config, args) -> dict:
    """(b): an epoch on the cached views against an end-to-end augmented epoch."""
    import keras
    import tensorflow as tf

    from inception_retrain.data.manifest import read_image_rows
    from inception_retrain.features.augmentation import keras_layers
    from inception_retrain.features.backbone import load_backbone
    from inception_retrain.training.fit import new_head
    from inception_retrain.training.head import compile_head
    from inception_retrain.training.training_data import load_training_data

    keras.utils.set_random_seed(0)
    train = read_image_rows(manifest.path, "train")
    common = {"batch_size": config.batch_size, "seed": 0, "memory_budget_mb": 4096}
    splits = {
        CACHED: load_training_data(
            cache.cache_dir,
            train.label_of(),
            {},
            views_dir=cache.views.views_dir,
            views_per_image=cache.views.per_image,
            **common,
        ).train,
        CACHED_PLAIN: load_training_data(cache.cache_dir, train.label_of(), {}, **common).train,
    }
    models = {name: new_head(cache.feature_shape, 2, config.head, seed=0) for name in splits}

    backbone = load_backbone(config.weights, config.layer, config.image_size)
    inputs = keras.Input((config.image_size, config.image_size, 3), name="resized_0_255")
    x = inputs
    for layer in keras_layers(config.augment, seed=0):
        x = layer(x)
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(x)
    head = new_head(cache.feature_shape, 2, config.head, seed=0)
    models[END_TO_END] = compile_head(
        keras.Model(inputs, head(backbone(x))), 2, config.head.learning_rate
    )
    labels = tf.data.Dataset.from_tensor_slices(np.asarray(train.label_indices, np.int32))

    def data(name: str, epoch: int):
        if name != END_TO_END:
            splits[name].epoch = epoch
            return splits[name].dataset()
        images = resized_images(train.uris, config.image_size)
        return tf.data.Dataset.zip(images, labels).batch(config.batch_size).prefetch(2)

    times: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    for epoch in range(args.repeats + 1):
        names = list(models)[epoch % 3 :] + list(models)[: epoch % 3]
        for name in names:
            seconds = timed_epoch(models[name], data(name, epoch), epoch, cpu[name])
            if epoch:  # epoch 0 traces
                times[name].append(seconds)
            else:
                cpu[name].pop()
        if epoch:
            print(f"epoch {epoch}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()))
    median = {name: statistics.median(values) for name, values in times.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    found = {
        "train_images": len(train),
        "batch_size": config.batch_size,
        "seconds": times,
        "cpu_seconds": cpu,
        "median_seconds": median,
        "median_cpu_seconds": median_cpu,
        "end_to_end_over_cached": median[END_TO_END] / median[CACHED],
        "end_to_end_over_cached_cpu": median_cpu[END_TO_END] / median_cpu[CACHED],
        "cached_views_over_cached_plain": median[CACHED] / median[CACHED_PLAIN],
    }
    print(
        f"(b) epoch of {len(train)} images: cached views {median[CACHED]:.3f} s, "
        f"no views {median[CACHED_PLAIN]:.3f} s, end to end {median[END_TO_END]:.2f} s: "
        f"end to end / cached views = {found['end_to_end_over_cached']:.1f}x "
        f"(CPU {found['end_to_end_over_cached_cpu']:.1f}x)"
    )
    return found


def resized_images(paths, size: int):
    """The JPEGs decoded (as the pipeline decodes them) and resized, in [0, 255]."""
    import keras
    import tensorflow as tf

    from inception_retrain.data.images import load_rgb
    from inception_retrain.features.tf_data import without_autotune

    resize = keras.layers.Resizing(size, size, interpolation="bilinear")

    def decode(path):
        image = tf.numpy_function(load_rgb, [path], tf.uint8, stateful=False)
        image.set_shape([None, None, 3])
        return resize(tf.cast(image, tf.float32))

    dataset = tf.data.Dataset.from_tensor_slices(list(map(str, paths)))
    return without_autotune(dataset.map(decode, num_parallel_calls=os.cpu_count() or 1))


def small_data(manifest, folder: Path, per_class: int) -> Path:
    """A split-folder copy of the demo: `per_class` train images per class (the first by
    content id), every validation and test image (hard links where possible)."""
    from inception_retrain.data.manifest import read_image_rows

    shutil.rmtree(folder, ignore_errors=True)
    for split in ("train", "validation", "test"):
        rows = read_image_rows(manifest.path, split)
        taken: dict[str, int] = {}
        for cid, uri, label in sorted(zip(rows.content_ids, rows.uris, rows.labels, strict=True)):
            if split == "train" and taken.get(label, 0) >= per_class:
                continue
            taken[label] = taken.get(label, 0) + 1
            target = folder / split / label / f"{cid[:16]}{Path(uri).suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(uri, target)
            except OSError:
                shutil.copyfile(uri, target)
    return folder


def print_effect(name: str, effect) -> None:
    print(
        f"(c) {name}: {effect.n_train} train images (+{effect.n_view_rows} view rows), "
        f"{effect.n_test} test, seeds {effect.seeds}, {effect.seconds:.0f} s; degenerate "
        f"{effect.degenerate}"
    )
    print("| claim | reference | compared | improvement [95% CI] | d_z | verdict |")
    print("| --- | --- | --- | --- | --- | --- |")
    for m in effect.metrics + effect.overfitting:
        d_z = "n/a" if m.effect_size is None else f"{m.effect_size:.2f}"
        print(
            f"| {m.claim} | {m.reference_label}: {m.mean_reference:.4f} "
            f"| {m.compared_label}: {m.mean_compared:.4f} | {m.interval.text(4)} "
            f"| {d_z} | {m.verdict} |"
        )


if __name__ == "__main__":
    main()
