"""Time to refuse bad input: the CLI's preflight vs the same refusal inside the retrain flow.

(a) `inception-retrain run ...` as a user types it: the CLI checks the inputs before it
    imports Prefect or TensorFlow (`inception_retrain.runs.preflight`).
(b) the same config through `run_retrain` (the flow, as a deployment run or the CLI before
    issue 15 ran it): Prefect's temporary server starts, then the flow's own preflight
    refuses. Before issue 15 these inputs were refused by a stage after that start, or by
    extraction after TensorFlow loaded the backbone, so (b) is a lower bound of the old time.

Each bad input is timed `--repeats` times each way, alternating, from process start to exit;
the table gives medians and the ratio b/a.

    python bench/refusal.py --repeats 3 --out refusal.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = Path(sys.executable).parent / "inception-retrain"
FLOW = """
import sys
from inception_retrain.config import RetrainConfig
from inception_retrain.flows.retrain import run_retrain
from inception_retrain.cli.main import config_from_options
options = dict(zip(sys.argv[1::2], sys.argv[2::2]))
_, ok, message = run_retrain(config_from_options(options))
assert not ok, "the run was not refused"
print(message)
"""


def cases(folder: Path) -> dict[str, dict[str, str]]:
    """Bad inputs the issue listed: {name: {option name: value}}."""
    from inception_retrain.data.demo_data import write_demo_data

    demo = folder / "demo"
    write_demo_data(demo, per_class=10, seed=0)
    empty = folder / "empty"
    empty.mkdir()
    one_class = folder / "one-class"
    (one_class / "cats").mkdir(parents=True)
    for path in sorted((demo / "stripes").glob("*.png"))[:3]:
        (one_class / "cats" / path.name).write_bytes(path.read_bytes())
    wrong = folder / "dense.weights.h5"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, keras; keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])"
            ".save_weights(sys.argv[1])",
            str(wrong),
        ],
        check=True,
        capture_output=True,
    )
    work = str(folder / "work")
    return {
        "empty folder": {"data": str(empty), "workdir": work},
        "one class": {"data": str(one_class), "workdir": work},
        "unknown tfds name": {"data": "tfds:no_such_dataset", "workdir": work},
        "split 1,0,0": {"data": str(demo), "split_fractions": "1,0,0", "workdir": work},
        "wrong-model weights": {"data": str(demo), "weights": str(wrong), "workdir": work},
    }


def timed(command: list[str], env: dict) -> tuple[float, int, str]:
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    last = (done.stdout + done.stderr).strip().splitlines()[-1:] or [""]
    return time.monotonic() - started, done.returncode, last[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    results = {"load_average_start": os.getloadavg(), "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        env["PREFECT_HOME"] = str(Path(tmp) / "prefect")
        for name, options in cases(Path(tmp)).items():
            cli_args = [a for k, v in options.items() for a in (f"--{k.replace('_', '-')}", v)]
            flow_args = [a for k, v in options.items() for a in (k, v)]
            cli_s, flow_s = [], []
            for _ in range(args.repeats):
                seconds, code, cli_line = timed([str(CLI), "run", *cli_args], env)
                assert code == 2, cli_line
                cli_s.append(seconds)
                seconds, code, flow_line = timed([sys.executable, "-c", FLOW, *flow_args], env)
                assert code == 0, flow_line
                flow_s.append(seconds)
            row = {
                "cli_s": statistics.median(cli_s),
                "flow_s": statistics.median(flow_s),
                "cli_message": cli_line,
                "flow_message": flow_line,
            }
            row["ratio"] = row["flow_s"] / row["cli_s"]
            results["cases"][name] = row
            print(
                f"{name:22s} CLI {row['cli_s']:5.2f} s   flow {row['flow_s']:5.2f} s   "
                f"b/a {row['ratio']:5.1f}x   {cli_line[:80]}",
                flush=True,
            )
    results["load_average_end"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
