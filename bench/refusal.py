"""Time to refuse: the speed figures the tests do not assert (they depend on the load).

Section `bad-input` (issue 15): the CLI's preflight vs the same refusal inside the flow.
(a) `inception-retrain run ...` as a user types it: the CLI checks the inputs before it
    imports Prefect or TensorFlow (`inception_retrain.runs.preflight`).
(b) the same config through `run_retrain` (the flow, as a deployment run or the CLI before
    issue 15 ran it): Prefect's temporary server starts, then the flow's own preflight
    refuses. Before issue 15 these inputs were refused by a stage after that start, or by
    extraction after TensorFlow loaded the backbone, so (b) is a lower bound of the old time.

Section `object-store` (issue 23): a bad S3 setting, real endpoints on 127.0.0.1 (moto's
server, with authentication on for bad keys; a port nobody listens on; a listener that never
answers; one whose full accept queue drops SYNs). Each case times (a) the new start-up
check alone (`storage.check_reachable`: one ListObjectsV2, 1.5 s time-outs, no retries),
(b) the check it replaced (`fs.ls(bucket)` with s3fs's defaults: two retry layers), capped
at `--old-cap` seconds, both in fresh processes, and (c) the whole `inception-retrain run`
refusal. An unreachable Dask scheduler is timed the same way, (c) only.

Section `commands` (issue 24): every command's refusal of a missing folder, a missing champion
or a bad option, from process start to exit (the target: under 1 s, one line, no TensorFlow).

Section `busy` (issue 23): `run --no-wait` on a workdir another process holds (exit 75).

Each case is timed `--repeats` times each way, alternating, from process start to exit;
the table gives medians and the ratios.

    python bench/refusal.py --repeats 3 --out refusal.json
    python bench/refusal.py --sections object-store,busy --repeats 3
    python bench/refusal.py --sections commands --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = Path(sys.executable).parent / "inception-retrain"
TESTS = Path(__file__).resolve().parent.parent / "tests"
NEW_CHECK = """
import sys
from inception_retrain.plumbing.errors import PipelineError
from inception_retrain.plumbing.storage import check_reachable
try:
    check_reachable(sys.argv[1], "feature cache")
except PipelineError as error:
    print(error)
"""
OLD_CHECK = """
import sys, s3fs
try:  # what storage.check_reachable did before issue 23: s3fs's defaults
    s3fs.S3FileSystem(skip_instance_cache=True).ls(sys.argv[1].split("/")[2], refresh=True)
except Exception as error:
    print(type(error).__name__, str(error).splitlines()[0][:120])
"""
HOLD_WORKDIR = """
import sys
from inception_retrain.runs import workdir
with workdir.run_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""
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


def timed(command: list[str], env: dict, cap: float = 600) -> tuple[float, int, str]:
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=cap)
    except subprocess.TimeoutExpired:
        return float("inf"), -1, f"(still running after {cap:g} s: stopped)"
    last = (done.stdout + done.stderr).strip().splitlines()[-1:] or [""]
    return time.monotonic() - started, done.returncode, last[0]


def bad_input(folder: Path, env: dict, repeats: int) -> dict:
    rows = {}
    for name, options in cases(folder).items():
        cli_args = [a for k, v in options.items() for a in (f"--{k.replace('_', '-')}", v)]
        flow_args = [a for k, v in options.items() for a in (k, v)]
        cli_s, flow_s = [], []
        for _ in range(repeats):
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
        rows[name] = row
        print(
            f"{name:22s} CLI {row['cli_s']:5.2f} s   flow {row['flow_s']:5.2f} s   "
            f"b/a {row['ratio']:5.1f}x   {cli_line[:80]}",
            flush=True,
        )
    return rows


@contextlib.contextmanager
def endpoints(folder: Path):
    """{case: (environment updates, location)} of the object-store cases."""
    sys.path.insert(0, str(TESTS))
    import boto3
    from s3_fixtures import MotoServer, SilentListener, SynDropListener, refusing_port

    plain = MotoServer(folder / "moto").start()
    auth = MotoServer(folder / "moto-auth", env={"INITIAL_NO_AUTH_ACTION_COUNT": "4"}).start()
    keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    try:
        plain.client(**keys, region_name="us-east-1").create_bucket(Bucket="bucket")
        auth.client(**keys, region_name="us-east-1").create_bucket(Bucket="bucket")
        iam = boto3.client("iam", endpoint_url=auth.endpoint, region_name="us-east-1", **keys)
        iam.create_user(UserName="u")
        key = iam.create_access_key(UserName="u")["AccessKey"]
        allow = {"Effect": "Allow", "Action": "*", "Resource": "*"}
        document = json.dumps({"Version": "2012-10-17", "Statement": [allow]})
        iam.put_user_policy(UserName="u", PolicyName="all", PolicyDocument=document)
        with SilentListener() as silent, SynDropListener() as dropping:
            yield {
                "missing bucket": ({"AWS_ENDPOINT_URL": plain.endpoint}, "s3://no-such/c"),
                "wrong secret key": (
                    {
                        "AWS_ENDPOINT_URL": auth.endpoint,
                        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                        "AWS_SECRET_ACCESS_KEY": "wrong",
                    },
                    "s3://bucket/c",
                ),
                "unknown access key": (
                    {"AWS_ENDPOINT_URL": auth.endpoint, "AWS_ACCESS_KEY_ID": "AKIAUNKNOWN0000"},
                    "s3://bucket/c",
                ),
                "endpoint refuses": (
                    {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{refusing_port()}"},
                    "s3://bucket/c",
                ),
                "endpoint never answers": (
                    {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent.port}"},
                    "s3://bucket/c",
                ),
                "packets dropped": (
                    {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{dropping.port}"},
                    "s3://bucket/c",
                ),
            }
    finally:
        plain.kill()
        auth.kill()


def object_store(folder: Path, env: dict, repeats: int, old_cap: float) -> dict:
    from inception_retrain.data.demo_data import write_demo_data

    demo = folder / "demo-s3"
    write_demo_data(demo, per_class=10, seed=0)
    base = {**env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    base["AWS_DEFAULT_REGION"] = "us-east-1"
    rows = {}
    with endpoints(folder) as found:
        for name, (updates, uri) in found.items():
            case_env = {**base, **updates}
            new_s, old_s, cli_s = [], [], []
            for _ in range(repeats):
                seconds, _, new_line = timed([sys.executable, "-c", NEW_CHECK, uri], case_env)
                new_s.append(seconds)
                seconds, _, old_line = timed(
                    [sys.executable, "-c", OLD_CHECK, uri], case_env, old_cap
                )
                old_s.append(seconds)
                command = [str(CLI), "run", "--data", str(demo), "--workdir", str(folder / "w")]
                seconds, code, cli_line = timed([*command, "--feature-cache", uri], case_env)
                assert code == 2, cli_line
                cli_s.append(seconds)
            row = {
                "check_s": statistics.median(new_s),
                "old_check_s": statistics.median(old_s),
                "cli_s": statistics.median(cli_s),
                "message": new_line,
                "old_message": old_line,
            }
            row["ratio"] = row["old_check_s"] / row["check_s"]
            rows[name] = row
            old = "   >cap" if row["old_check_s"] == float("inf") else f"{row['old_check_s']:7.2f}"
            print(
                f"{name:22s} check {row['check_s']:5.2f} s   old {old} s   "
                f"CLI {row['cli_s']:5.2f} s   {new_line[:70]}",
                flush=True,
            )
    sys.path.insert(0, str(TESTS))
    from s3_fixtures import refusing_port

    scheduler = f"tcp://127.0.0.1:{refusing_port()}"
    cli_s = []
    for _ in range(repeats):
        command = [str(CLI), "run", "--data", str(demo), "--workdir", str(folder / "w")]
        seconds, code, line = timed([*command, "--cluster", scheduler], base)
        assert code == 2, line
        cli_s.append(seconds)
    rows["scheduler refuses"] = {"cli_s": statistics.median(cli_s), "message": line}
    print(f"{'scheduler refuses':22s} CLI {statistics.median(cli_s):5.2f} s   {line[:70]}")
    return rows


def command_refusals(folder: Path) -> dict[str, list[str]]:
    """{case: CLI arguments} that each command must refuse with exit code 2."""
    missing, empty = str(folder / "missing"), folder / "empty-workdir"
    empty.mkdir(exist_ok=True)
    return {
        "run: missing data folder": ["run", "--data", missing, "--workdir", str(empty)],
        "run: bad option value": ["run", "--image-size", "50"],
        "dropout-report: missing run": ["dropout-report", "--run", missing],
        "predict: no champion": ["predict", "--workdir", str(empty), missing],
        "runs show: missing run": ["runs", "show", "nope", "--workdir", str(empty)],
        "runs compare: missing run": ["runs", "compare", "a", "b", "--workdir", str(empty)],
        "models prune: bad option": ["models", "prune", "--keep", "-1"],
        "cache prune: bad option": ["cache", "prune", "--keep-latest", "x"],
        "serve: bad cron": ["serve", "--cron", "not a cron", "--workdir", str(empty)],
        "demo-data: bad option": ["demo-data", str(folder / "d"), "--per-class", "3"],
    }


def commands(folder: Path, env: dict, repeats: int) -> dict:
    rows = {}
    for name, arguments in command_refusals(folder).items():
        seconds_each = []
        for _ in range(repeats):
            seconds, code, line = timed([str(CLI), *arguments], env)
            assert code == 2, (name, code, line)
            seconds_each.append(seconds)
        rows[name] = {"cli_s": statistics.median(seconds_each), "max_s": max(seconds_each)}
        rows[name]["message"] = line
        print(
            f"{name:28s} {rows[name]['cli_s']:5.2f} s (max {max(seconds_each):4.2f})  {line[:70]}"
        )
    return rows


def busy(folder: Path, env: dict, repeats: int) -> dict:
    from inception_retrain.data.demo_data import write_demo_data

    demo, work = folder / "demo-busy", folder / "busy-work"
    write_demo_data(demo, per_class=10, seed=0)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WORKDIR, str(work)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        seconds_each = []
        for _ in range(repeats):
            command = [str(CLI), "run", "--data", str(demo), "--workdir", str(work), "--no-wait"]
            seconds, code, line = timed(command, env)
            assert code == 75, line
            seconds_each.append(seconds)
    finally:
        holder.communicate("\n", timeout=60)
    row = {"cli_s": statistics.median(seconds_each), "message": line}
    print(f"{'--no-wait, workdir busy':22s} CLI {row['cli_s']:5.2f} s   {line[:70]}")
    return {"no-wait while busy": row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sections", default="bad-input,object-store,busy,commands")
    parser.add_argument("--old-cap", type=float, default=60.0, help="Stop the old check then.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_"))}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    results = {"load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        env["PREFECT_HOME"] = str(Path(tmp) / "prefect")
        if "bad-input" in sections:
            results["cases"] = bad_input(Path(tmp), env, args.repeats)
        if "object-store" in sections:
            results["object_store"] = object_store(Path(tmp), env, args.repeats, args.old_cap)
        if "commands" in sections:
            results["commands"] = commands(Path(tmp), env, args.repeats)
        if "busy" in sections:
            results["busy"] = busy(Path(tmp), env, args.repeats)
    results["load_average_end"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
