"""Benchmark of the data checks (issue 22, item 6): what they add to a nightly run.

    python bench/data_checks.py                          # demo, grown by 20%; about 15 min
    python bench/data_checks.py --per-class 60 --repeats 1 --out r.json   # a quick check

In one run: the demo data (`inception-retrain demo-data`, `--per-class` images per class),
the default settings (seeded random InceptionV3 to mixed7 at 150 px, the seed's head, the
claims' dropout sweep). A first run (untimed) makes the champion; the demo then grows by 20%
(new images of the same generator, as a nightly folder grows), and that state is copied
aside. Then, `--repeats` times, alternating which goes first, a run with the data checks and
one with `--no-data-checks` each start from a fresh copy of that state, so both do the same
work otherwise (ingest, extracting the new images, training, the sweep of the grown data,
promotion and export) and both find the same champion to compare with. Reported:

  * each run's wall and process CPU time, and the ratio with / without checks (end to end:
    includes the run-to-run noise of everything else);
  * the data checks' own stages in the runs with checks (`validate-data`, `data-drift`,
    `data-report`, from the flow run's task runs), as a share of the run without checks:
    the figure the issue bounds at 5%;
  * `slices` (the sliced evaluation runs in both ways: it is part of evaluation);
  * what ingest pays for the brightness it now records (`images.brightness`) per image,
    against `examine`'s own time per image, on the demo files.

Nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Prefect's ephemeral server gets 20 s to start by default: too little on a busy machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from common import finish, machine  # noqa: E402

CHECK_STAGES = ("validate-data", "data-drift", "data-report")
WAYS = ("with checks", "without checks")


def stage_seconds(run_dir: Path) -> dict[str, float]:
    """Seconds of each task run of the run's flow run, by stage (the name before its id)."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_run_id = json.loads((run_dir / "config.json").read_text())["flow_run_id"]
    seconds: dict[str, float] = {}
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    for task_run in task_runs:
        stage = next(
            (s for s in (*CHECK_STAGES, "slices") if task_run.name.startswith(s)), task_run.name
        )
        if task_run.start_time and task_run.end_time:
            took = (task_run.end_time - task_run.start_time).total_seconds()
            seconds[stage] = seconds.get(stage, 0.0) + took
    return seconds


def brightness_cost(folder: Path, limit: int = 200) -> dict:
    """CPU ms per image of `examine` (which now includes brightness) and of brightness alone,
    median of 3 passes over up to `limit` demo files."""
    from PIL import Image

    from inception_retrain.data.images import DEFAULT_MAX_PIXELS, brightness, examine, to_rgb

    files = sorted(p for p in folder.rglob("*") if p.suffix in (".jpg", ".png"))[:limit]
    decoded = []
    for path in files:
        with Image.open(path) as image:
            decoded.append(to_rgb(image))
    examine_ms, brightness_ms = [], []
    for _ in range(3):
        started = time.process_time()
        for path in files:
            examine(path, DEFAULT_MAX_PIXELS)
        examine_ms.append(1000 * (time.process_time() - started) / len(files))
        started = time.process_time()
        for image in decoded:
            brightness(image)
        brightness_ms.append(1000 * (time.process_time() - started) / len(files))
    return {
        "images": len(files),
        "examine_cpu_ms": statistics.median(examine_ms),
        "brightness_cpu_ms": statistics.median(brightness_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=200, help="demo images per class")
    parser.add_argument("--growth", type=float, default=0.2, help="new images, as a share")
    parser.add_argument("--repeats", type=int, default=2, help="runs per way")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-data-checks-"))
    os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))  # before Prefect loads

    from inception_retrain.config import RetrainConfig
    from inception_retrain.data.demo_data import write_demo_data
    from inception_retrain.flows.retrain import run_retrain

    demo = root / "demo"
    write_demo_data(demo, per_class=args.per_class)
    results = {"machine": machine(), "per_class": args.per_class, "growth": args.growth}

    started = time.perf_counter()
    first, ok, message = run_retrain(RetrainConfig(data=str(demo), workdir=root / "state"))
    if not ok:
        raise SystemExit(f"warm-up run failed: {message}")
    results["first_run_s"] = time.perf_counter() - started
    write_demo_data(demo, per_class=round(args.per_class * (1 + args.growth)))
    results["brightness"] = brightness_cost(demo)

    runs = {way: [] for way in WAYS}
    for repeat in range(args.repeats):
        order = WAYS if repeat % 2 == 0 else WAYS[::-1]
        for way in order:
            workdir = root / f"run-{repeat}-{way.split()[0]}"
            shutil.copytree(root / "state", workdir, symlinks=True)
            config = RetrainConfig(
                data=str(demo), workdir=workdir, data_checks=(way == "with checks")
            )
            wall, cpu = time.perf_counter(), time.process_time()
            run_dir, ok, message = run_retrain(config)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if not ok:
                raise SystemExit(f"{way} run failed: {message}")
            stages = stage_seconds(run_dir)
            runs[way].append({"wall_s": wall, "cpu_s": cpu, "stages": stages})
            checks = sum(stages.get(s, 0.0) for s in CHECK_STAGES)
            print(
                f"{way:15s} repeat {repeat}: {wall:7.1f} s wall, {cpu:7.1f} s CPU; "
                f"checks {checks:.2f} s"
            )
            shutil.rmtree(workdir, ignore_errors=True)

    def median(way, key):
        return statistics.median(r[key] for r in runs[way])

    without = median("without checks", "wall_s")
    checks = [sum(r["stages"].get(s, 0.0) for s in CHECK_STAGES) for r in runs["with checks"]]
    per_stage = {
        stage: statistics.median(r["stages"].get(stage, 0.0) for r in runs["with checks"])
        for stage in (*CHECK_STAGES, "slices")
    }
    results.update(
        runs=runs,
        wall_with_s=median("with checks", "wall_s"),
        wall_without_s=without,
        end_to_end_ratio=median("with checks", "wall_s") / without,
        cpu_ratio=median("with checks", "cpu_s") / median("without checks", "cpu_s"),
        checks_s=statistics.median(checks),
        checks_share=statistics.median(checks) / without,
        stages_s=per_stage,
    )
    print(
        f"\nrun without checks {without:.1f} s, with {results['wall_with_s']:.1f} s: "
        f"end to end {results['end_to_end_ratio']:.3f}x wall, {results['cpu_ratio']:.3f}x CPU"
    )
    print(
        "data checks' own stages: "
        + ", ".join(f"{s} {per_stage[s]:.2f} s" for s in CHECK_STAGES)
        + f" = {results['checks_s']:.2f} s, {100 * results['checks_share']:.2f}% of the run "
        f"without checks (slices, in both: {per_stage['slices']:.2f} s)"
    )
    b = results["brightness"]
    print(
        f"ingest: examine {b['examine_cpu_ms']:.3f} CPU-ms per image, of which brightness "
        f"{b['brightness_cpu_ms']:.3f} ({100 * b['brightness_cpu_ms'] / b['examine_cpu_ms']:.1f}%)"
    )
    finish(results, args.out)


if __name__ == "__main__":
    main()
