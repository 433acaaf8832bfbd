"""Benchmark of the dropout sweep (issues 12 and 20): the cross-fitted sweep against the old
seed-by-seed design, side by side in one run, its overhead, and its cost as the data grows.

    python bench/sweep.py                          # the demo data, ~15 min on a busy 2-core box
    python bench/sweep.py --run WORKDIR/runs/ID    # a finished run's cache, manifest and config
    python bench/sweep.py --data scanned --skip-scale   # scanned-looking pages (scanned_images.py)
    python bench/sweep.py --skip-scale --out results.json

Targets: the new sweep's wall time over the sum of its trainings' own epoch times (the
`seconds` their histories record, measured inside the same sweep: the denominator) <= 1.15;
its cost no more than the old design's on the same data, or at most twice it, with the
measurements below to say why; bounded cost at 20,000 images.

In one process, on one data set (the demo: 400 images, 80/10/10 splits, ingested and
extracted by the real stages; or a finished run's):
  1. baseline, the old design (issue 12, kept here only): 4 configs x 5 seeds = 20 trainings
     on the train split, early stopping on validation loss (patience 3, at most 20 epochs,
     best weights restored), raw features, each scored on train, validation and test, on the
     same traced head (`reusable_head.sweep_head`);
  2. the new design: `flows.sweep.run_sweep(spec)` as the retrain flow calls it (one Prefect
     task run per training, results stored as they finish, an empty sweeps folder), with the
     config's settings: 2 repeats x 5 folds over train + validation, a fixed epoch budget,
     standardised features, MC-dropout passes, C2's order check;
  3. ratios: new / old wall time and image-epochs, and the new sweep's overhead;
  4. scale: the new sweep on synthetic cached features of 400, 2,000 and 20,000 images (a
     smaller feature map, 7x7x64, so 20,000 images fit the disk of a laptop): above
     `sweep_max_images` (2,000) it trains on a stratified sample, so its cost stays bounded.
The machine is shared: compare ratios measured side by side, not absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import numpy as np  # noqa: E402
from common import finish, machine  # noqa: E402

OVERHEAD_TARGET = 1.15
COST_TARGET, COST_LIMIT = 1.0, 2.0
OLD = {"seeds": 5, "epochs": 20, "patience": 3}  # the old design's settings
SCALE_SIZES = (400, 2000, 20000)
SCALE_SHAPE = (7, 7, 64)


def prepare(args):
    """(config, cache, manifest) of the data the sweep trains on."""
    from inception_retrain.config import RetrainConfig
    from inception_retrain.runs.finished_run import open_finished_run

    if args.run is not None:
        run = open_finished_run(args.run)
        return RetrainConfig.from_recorded(run.settings), run.cache, run.manifest
    from inception_retrain.data.demo_data import write_demo_data
    from inception_retrain.data.ingest import ingest
    from inception_retrain.features.extraction import extract_features
    from inception_retrain.runs.run_folder import new_run_dir

    workdir = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    folder = workdir / "images"
    if args.data == "scanned":
        from scanned_images import write_scanned_images

        write_scanned_images(folder, per_class=args.per_class)
    elif args.data == "demo":
        write_demo_data(folder, per_class=args.per_class)
    else:
        folder = args.data
    config = RetrainConfig(data=str(folder), workdir=workdir, weights="random:0")
    run_dir = new_run_dir(workdir)
    manifest = ingest(config.ingest, run_dir)
    return config, extract_features(manifest, config.extraction, run_dir), manifest


def old_design(config, cache, manifest) -> dict:
    """Issue 12's sweep: every claims config once per seed on the train split, early
    stopping on validation, scored on every split."""
    from inception_retrain.dropout.sweep import CLAIM_CELLS
    from inception_retrain.training.fit import op_determinism
    from inception_retrain.training.reusable_head import ReusedSplit, sweep_head
    from inception_retrain.training.training_data import load_split

    splits = {
        name: load_split(cache.cache_dir, manifest.path, name)[1:]
        for name in ("train", "validation", "test")
    }
    train = ReusedSplit(*splits["train"], config.batch_size, seed=0, shuffle=True)
    validation = ReusedSplit(*splits["validation"], config.batch_size, seed=0, shuffle=False)
    head = sweep_head(tuple(cache.feature_shape), manifest.n_classes, config.head)
    clock = time.perf_counter()
    epochs, epoch_seconds, degenerate = 0, 0.0, 0
    for rate, placement in CLAIM_CELLS:
        for seed in range(OLD["seeds"]):
            train.seed, train.epoch, validation.epoch = seed, 0, 0
            with op_determinism():
                head.reset(seed, config.head.with_dropout(rate, placement).rates)
                fitted = head.train(
                    train, validation, epochs=OLD["epochs"], patience=OLD["patience"]
                )
            scores = {name: head.predict(x).argmax(axis=1) for name, (x, _) in splits.items()}
            degenerate += len(set(scores["validation"].tolist())) == 1
            epochs += fitted.epochs_run
            epoch_seconds += sum(fitted.history["seconds"])
    wall = time.perf_counter() - clock
    return {
        "design": f"4 configs x {OLD['seeds']} seeds, early stopping (patience "
        f"{OLD['patience']}, at most {OLD['epochs']} epochs) on {len(splits['validation'][1])} "
        "validation images, raw features",
        "trainings": 4 * OLD["seeds"],
        "images_per_training": len(splits["train"][1]),
        "epochs_run": epochs,
        "image_epochs": epochs * len(splits["train"][1]),
        "degenerate": degenerate,
        "wall_s": wall,
        "epoch_seconds_s": epoch_seconds,
    }


def new_design(spec) -> dict:
    from inception_retrain.flows.sweep import run_sweep

    clock = time.perf_counter()
    summary = run_sweep(spec)
    wall = time.perf_counter() - clock
    image_epochs = sum(r.n_train * r.epochs_run for r in [*summary.results, *summary.order_check])
    return {
        "design": f"{spec.repeats}x{spec.folds} cross-fit over train + validation, fixed "
        f"{spec.epochs} epochs, standardised features, {spec.mc_passes} MC passes, "
        f"order check {spec.order_check}",
        "images": summary.plan.n,
        "pool": summary.plan.pool_size,
        "sampled": summary.plan.sampled,
        "trainings": summary.trainings,
        "computed": summary.cache.computed if summary.cache else None,
        "epochs_run": summary.epochs_total,
        "image_epochs": image_epochs,
        "degenerate": summary.degenerate,
        "wall_s": wall,
        "epoch_seconds_s": summary.epoch_seconds_total,
        "trainings_own_s": summary.seconds_total,
        "overhead_ratio": wall / summary.epoch_seconds_total,
        "configs": {
            f"{c.rate:g}/{c.placement}": {"accuracy": c.accuracy, "brier": c.brier}
            for c in summary.configs
        },
    }


def synthetic_cache(root: Path, n: int, shape) -> tuple[Path, Path]:
    """A learnable synthetic cache of `n` images (float16 Parquet, 80/10/10 splits) and its
    manifest, written in parts of 1,000 rows."""
    import hashlib

    from inception_retrain.data.manifest import ManifestRow, write_manifest
    from inception_retrain.features.feature_parts import feature_schema, write_part

    fingerprint = f"scale{n:011d}"
    cache_dir = root / "cache" / fingerprint
    schema = feature_schema(shape, "float16", {"fingerprint": fingerprint})
    rng = np.random.default_rng(n)
    direction = rng.standard_normal(int(np.prod(shape))).astype(np.float32)
    rows = []
    for start in range(0, n, 1000):
        count = min(1000, n - start)
        labels = rng.integers(0, 2, count)
        x = rng.standard_normal((count, int(np.prod(shape)))).astype(np.float32)
        x = np.maximum(x + 0.15 * (2 * labels[:, None] - 1) * direction, 0).reshape(count, *shape)
        ids = [
            hashlib.sha256(f"{fingerprint}-{start + i}".encode()).hexdigest() for i in range(count)
        ]
        splits = rng.choice(["train", "validation", "test"], size=count, p=[0.8, 0.1, 0.1]).tolist()
        write_part(cache_dir, schema, ids, labels.tolist(), splits, x)
        rows += [
            ManifestRow(
                uri=f"/img/{c}.png", label=f"c{y}", label_index=int(y), split=s, content_id=c
            )
            for c, y, s in zip(ids, labels, splits, strict=True)
        ]
    manifest = root / "manifest.parquet"
    write_manifest(manifest, rows, ["c0", "c1"], "bench", {})
    return cache_dir, manifest


def scale(config, sizes, shape) -> list[dict]:
    from inception_retrain.dropout.sweep import SweepSpec

    out = []
    for n in sizes:
        root = Path(tempfile.mkdtemp(prefix=f"bench-sweep-scale-{n}-"))
        cache_dir, manifest = synthetic_cache(root, n, shape)
        spec = config.sweep(cache_dir, manifest, 2, shape)
        spec = SweepSpec(**{**spec.model_dump(), "sweeps_dir": root / "sweeps"})
        row = {"images_in_cache": n, **new_design(spec)}
        row.pop("configs")
        out.append(row)
        print(
            f"scale {n}: {row['images']} of {row['pool']} train+validation images "
            f"({'sampled' if row['sampled'] else 'all'}), {row['trainings']} trainings, "
            f"wall {row['wall_s']:.1f} s, overhead {row['overhead_ratio']:.3f}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a finished run folder")
    parser.add_argument(
        "--data", default="demo", help="demo, scanned (bench/scanned_images.py) or a folder"
    )
    parser.add_argument("--per-class", type=int, default=200, help="generated images per class")
    parser.add_argument("--epochs", type=int, default=None, help="sweep epochs [config's]")
    parser.add_argument("--skip-scale", action="store_true", help="no 400/2,000/20,000 run")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    from prefect import flow

    info = machine()
    started = time.perf_counter()
    config, cache, manifest = prepare(args)
    if args.epochs:
        config = config.model_copy(update={"sweep_epochs": args.epochs})
    print(f"data ready in {time.perf_counter() - started:.0f} s: {cache.cache_dir}")
    spec = config.sweep(
        cache.cache_dir, manifest.path, manifest.n_classes, cache.feature_shape
    ).model_copy(update={"sweeps_dir": Path(tempfile.mkdtemp(prefix="bench-sweeps-"))})

    flow(name="bench-warm-up")(lambda: None)()  # Prefect's temporary server, started
    new = new_design(spec)  # first: it traces the head, which the old design then reuses
    old = old_design(config, cache, manifest)
    results = {
        "machine": info,
        "data": {"source": args.data, "cache": str(cache.cache_dir)},
        "old": old,
        "new": new,
        "cost_ratio_wall": new["wall_s"] / old["wall_s"],
        "cost_ratio_image_epochs": new["image_epochs"] / old["image_epochs"],
        "overhead_ratio": new["overhead_ratio"],
        "targets": {
            "overhead": OVERHEAD_TARGET,
            "cost": COST_TARGET,
            "cost_limit": COST_LIMIT,
        },
    }
    if not args.skip_scale:
        rows = scale(config, SCALE_SIZES, SCALE_SHAPE)
        base = rows[0]["wall_s"]
        for row in rows:
            row["wall_vs_400"] = row["wall_s"] / base
        results["scale"] = {"feature_shape": list(SCALE_SHAPE), "rows": rows}
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))
    print(
        f"old design: {old['trainings']} trainings, {old['epochs_run']} epochs, "
        f"{old['wall_s']:.1f} s ({old['degenerate']} degenerate); new: {new['trainings']} "
        f"trainings, {new['epochs_run']} epochs, {new['wall_s']:.1f} s ({new['degenerate']} "
        f"degenerate); new/old wall {results['cost_ratio_wall']:.2f} (image-epochs "
        f"{results['cost_ratio_image_epochs']:.2f}); overhead {new['overhead_ratio']:.3f} "
        f"(target <= {OVERHEAD_TARGET})"
    )
    finish(results, args.out)


if __name__ == "__main__":
    main()
