"""Benchmark of the dropout sweep (issue 12): is its cost training, not set-up?

    python bench/sweep.py                          # the demo data, default sweep, ~3 min here
    python bench/sweep.py --run WORKDIR/runs/ID    # a finished run's cache, manifest and config
    python bench/sweep.py --seeds 3 --epochs 10 --out results.json

Target: the sweep's wall time <= 1.25 x the sum over its trainings of (epochs actually run x
the main head's epoch time on the same data).

In one process, on one data set:
  1. data: the demo dataset (`demo_data.write_demo_data`, 400 images in two classes), ingested
     and extracted by the real stages (seeded random InceptionV3 to mixed7, 150 px, float16
     cache, 80/10/10 splits); or, with --run, a finished run's cache, manifest and config;
  2. the main head's epoch time: `fit.fit_head` with the run's head (the seed's by default) at
     the run's batch size on the same train and validation splits, validation included, which
     is the training stage's loop without its TensorBoard and checkpoint callbacks (so a
     slightly shorter epoch: the comparison is strict). The median of epochs 2..N (the first
     traces), over epochs timed before and after the sweep together, is the reference;
  3. the sweep: `flows.sweep.run_sweep(spec)`, as the retrain flow calls it (one Prefect task
     run per training, its result stored as it finishes), with the config's sweep settings
     and an empty sweeps folder, so every training runs. Prefect's temporary server is started
     before the clock starts (the retrain flow has it running already);
  4. ratio = sweep wall / (sum of epochs run x the main head's epoch time). Also reported: the
     trainings' own epoch seconds (from their histories) and the rest per training
     (re-initialising, scoring, storing, the task run), which is the set-up cost.
Machines are shared: compare the ratio, measured side by side, not absolute seconds.
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
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from common import machine  # noqa: E402

TARGET = 1.25


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
    write_demo_data(workdir / "demo-data", per_class=args.per_class)
    config = RetrainConfig(data=str(workdir / "demo-data"), workdir=workdir, weights="random:0")
    run_dir = new_run_dir(workdir)
    manifest = ingest(config.ingest, run_dir)
    return config, extract_features(manifest, config.extraction, run_dir), manifest


def main_head_epochs(config, splits, epochs: int) -> list[float]:
    """Wall seconds of the main head's epochs 2..`epochs` (validation included)."""
    from inception_retrain.training.fit import fit_head

    _, fitted = fit_head(
        splits["train"],
        splits["validation"] if len(splits["validation"][1]) else None,
        spec=config.head,
        seed=config.seed,
        epochs=epochs,
        batch_size=config.batch_size,
        patience=0,
    )
    return fitted.history["seconds"][1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a finished run folder")
    parser.add_argument("--per-class", type=int, default=200, help="demo images per class")
    parser.add_argument("--seeds", type=int, default=None, help="sweep seeds [config's]")
    parser.add_argument("--epochs", type=int, default=None, help="sweep max epochs [config's]")
    parser.add_argument("--grid", choices=("claims", "full"), default=None)
    parser.add_argument("--head-epochs", type=int, default=8, help="main-head epochs per fit")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    from prefect import flow

    from inception_retrain.dropout import sweep
    from inception_retrain.flows.sweep import run_sweep

    info = machine()
    started = time.perf_counter()
    config, cache, manifest = prepare(args)
    overrides = {"sweep_seeds": args.seeds, "sweep_epochs": args.epochs, "sweep_grid": args.grid}
    config = config.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    print(f"data ready in {time.perf_counter() - started:.0f} s: {cache.cache_dir}")
    spec = config.sweep(
        cache.cache_dir, manifest.path, manifest.n_classes, cache.feature_shape
    ).model_copy(update={"sweeps_dir": Path(tempfile.mkdtemp(prefix="bench-sweeps-"))})
    splits = sweep._splits(str(spec.cache_dir), str(spec.manifest_path))

    flow(name="bench-warm-up")(lambda: None)()  # Prefect's temporary server, started
    before = main_head_epochs(config, splits, args.head_epochs)
    clock = time.perf_counter()
    summary = run_sweep(spec)
    sweep_s = time.perf_counter() - clock
    after = main_head_epochs(config, splits, args.head_epochs)

    epoch_s = statistics.median(before + after)
    runs = [run for row in summary.configs for run in row.runs]
    epochs = sum(run.epochs_run for run in runs)
    own = [second for run in runs for second in run.history.get("seconds", [])]
    trained_s = sum(own)
    reference = epochs * epoch_s
    results = {
        "machine": info,
        "data": {"cache": str(cache.cache_dir), "split_sizes": summary.split_sizes},
        "sweep": {
            "grid": spec.grid,
            "configs": len(summary.configs),
            "seeds": len(spec.seeds),
            "trainings": summary.trainings,
            "max_epochs": spec.epochs,
            "patience": spec.patience,
            "epochs_run": epochs,
            "computed": summary.cache.computed if summary.cache else None,
        },
        "main_head_epoch_s": {
            "median": epoch_s,
            "before": statistics.median(before),
            "after": statistics.median(after),
        },
        "sweep_epoch_median_s": statistics.median(own) if own else None,
        "sweep_wall_s": sweep_s,
        "reference_s": reference,
        "ratio": sweep_s / reference,
        "target": TARGET,
        "trainings_epoch_seconds_s": trained_s,
        "set_up_per_training_s": (sweep_s - trained_s) / max(summary.trainings, 1),
        "ratio_to_own_epochs": sweep_s / trained_s if trained_s else None,
        "load_average_end": os.getloadavg(),
    }
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))
    print(
        f"sweep {sweep_s:.1f} s for {summary.trainings} trainings, {epochs} epochs; main head "
        f"{epoch_s:.3f} s/epoch (median of {len(before + after)}); ratio "
        f"{sweep_s / reference:.3f} (target <= {TARGET})"
    )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
