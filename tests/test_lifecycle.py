"""The real CLI on one workdir: kill -9 during export, `--no-wait`, two runs at once, quiet logs.

One sequence of real `inception-retrain run` processes (tiny demo data, 75 px, one epoch, a
one-seed sweep) against the session's Prefect server, shared by the tests below:

  1. run A starts; while it runs, a second `run --no-wait` is refused (without waiting for
     A: how fast is bench/refusal.py's to measure, not a test's to assert);
  2. A is SIGKILLed while its export writes the model into models/.staging-*;
  3. `runs ls` shows A as killed (the next command that looks);
  4. runs D and E start together on the same workdir: one waits for the other, saying so;
     the first removes A's staging folder and publishes the first champion; the second
     starts after it ended, reuses its features and sweep results, and publishes nothing
     (it trained the same model).

Their stderr is read as a user would see it: no TensorFlow noise, no traceback.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from prefect_fixtures import child_env
from tiny_cli import TINY_SWEEP

# Whole CLI runs in real processes (about 2 minutes): extended. The default suite keeps the
# smaller versions: test_workdir (the run lock: wait, --no-wait, a dead holder), test_registry
# (kills at every moment of promotion) and test_cli (no TensorFlow noise on the CLI).
pytestmark = [pytest.mark.slow, pytest.mark.extended]

CLI = Path(sys.executable).parent / "inception-retrain"
RUN_TIMEOUT_S = 420
TINY = [
    "--weights",
    "random:0",
    "--image-size",
    "75",
    "--hidden-units",
    "64,128",
    "--split-fractions",
    "0.5,0.2,0.3",
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--patience",
    "0",
    *TINY_SWEEP,
]
NOISE = re.compile(
    r"cuInit|DT_HALF|absl::InitializeLog|oneDNN custom operations|Could not find cuda drivers"
    r"|This TensorFlow binary is optimized|triggered tf\.function retracing|Traceback"
)


def start(options: list[str], log: Path, env: dict) -> subprocess.Popen:
    with open(log.with_suffix(".out"), "wb") as out, open(log.with_suffix(".err"), "wb") as err:
        return subprocess.Popen(
            [str(CLI), "run", *options],
            stdout=out,
            stderr=err,
            env=env,
            cwd=log.parent,
            start_new_session=True,
        )


def wait_for(condition, process: subprocess.Popen, what: str, timeout_s: float = RUN_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        assert process.poll() is None, f"the run ended (code {process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout_s} s"
        time.sleep(0.1)
    return found


def run_dirs(work: Path) -> set[Path]:
    return set((work / "runs").glob("2*")) if (work / "runs").is_dir() else set()


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


@pytest.fixture(scope="module")
def lifecycle(prefect_server, tmp_path_factory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("lifecycle")
    # The CLI's own defaults, not the test session's: no TF_CPP_MIN_LOG_LEVEL, GPUs visible.
    env = child_env(PREFECT_API_URL=prefect_server.api_url, PREFECT_HOME=str(folder / "home"))
    for name in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES"):
        env.pop(name, None)
    data = folder / "data"
    subprocess.run(
        [str(CLI), "demo-data", str(data), "--per-class", "10"], check=True, capture_output=True
    )
    work = folder / "work"
    options = ["--data", str(data), "--workdir", str(work), *TINY]
    result = SimpleNamespace(folder=folder, work=work)

    # 1-2. A runs; --no-wait is refused while it does; A is killed during its export.
    a = start(options, folder / "a", env)
    try:
        (result.a_dir,) = wait_for(lambda: run_dirs(work), a, "run folder")
        before = run_dirs(work)
        result.no_wait = subprocess.run(
            [str(CLI), "run", *options, "--no-wait"],
            env=env,
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=60,
        )
        result.no_wait_new_runs = run_dirs(work) - before
        staged = wait_for(lambda: list(work.glob("models/.staging-*/model.keras")), a, "export")
        result.staging = staged[0].parent
    finally:
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(timeout=60)
    result.a_code = a.returncode
    result.staging_existed = result.staging.is_dir()
    result.a_status_after_kill = status(result.a_dir)

    # 3. The next command that looks recognises the kill.
    result.runs_ls = subprocess.run(
        [str(CLI), "runs", "ls", "--workdir", str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    # 4. D and E at once.
    d = start(options, folder / "d", env)
    e = start(options, folder / "e", env)
    for process in (d, e):
        try:
            process.wait(timeout=RUN_TIMEOUT_S)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    result.d, result.e = d, e
    result.err = {
        p.pid: (folder / name).with_suffix(".err").read_text() for p, name in ((d, "d"), (e, "e"))
    }
    result.out = {
        p.pid: (folder / name).with_suffix(".out").read_text() for p, name in ((d, "d"), (e, "e"))
    }
    return result


def test_no_wait_is_refused_while_a_run_is_in_progress(lifecycle):
    done = lifecycle.no_wait
    assert done.returncode == 75, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and "is using the workdir" in line and "try later" in line
    assert lifecycle.a_dir.name in line or "another run (pid" in line
    assert not lifecycle.no_wait_new_runs  # it started nothing


def test_a_run_killed_during_export_is_recognised_and_its_leftovers_removed(lifecycle):
    assert lifecycle.a_code == -signal.SIGKILL
    assert lifecycle.staging_existed  # the kill left a half-written staging folder
    assert lifecycle.a_status_after_kill["state"] == "running"  # the dead process's last word
    listed = lifecycle.runs_ls
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if lifecycle.a_dir.name in line]
    assert row.split()[1] == "killed"
    assert status(lifecycle.a_dir)["state"] == "killed"
    assert (lifecycle.a_dir / "failure.json").is_file()
    assert not lifecycle.staging.exists()  # removed by the next run
    assert not list(lifecycle.work.glob("models/.*.tmp"))


def test_two_runs_at_once_one_waits_and_nothing_is_done_twice(lifecycle):
    d, e, work = lifecycle.d, lifecycle.e, lifecycle.work
    for process in (d, e):
        assert process.returncode == 0, lifecycle.err[process.pid][-3000:]
    waited = [p for p in (d, e) if "waiting for " in lifecycle.err[p.pid]]
    assert len(waited) == 1
    second = waited[0]
    first = d if second is e else e
    (line,) = [x for x in lifecycle.err[second.pid].splitlines() if "waiting for " in x]
    assert f"pid {first.pid}" in line and str(work) in line

    first_dir = Path(lifecycle.out[first.pid].splitlines()[-1])
    second_dir = Path(lifecycle.out[second.pid].splitlines()[-1])
    ended, began = status(first_dir)["updated"], status(second_dir)["started"]
    assert ended <= began  # one after the other

    versions = sorted(p.name for p in (work / "models").glob("v*"))
    assert len(versions) == 1  # one model published, by the first
    assert json.loads((work / "models" / "champion.json").read_text())["version"] == versions[0]
    first_promotion, second_promotion = (
        status(first_dir)["promotion"],
        status(second_dir)["promotion"],
    )
    assert (first_promotion["decision"], first_promotion["version"]) == ("promoted", versions[0])
    assert (second_promotion["decision"], second_promotion["version"]) == ("rejected", None)
    reason = json.loads((second_dir / "promotion.json").read_text())["reason"]
    assert reason.startswith(f"the same model as the champion {versions[0]}")

    extract = json.loads((second_dir / "extract.json").read_text())
    assert extract["computed"] == 0 and extract["cached_images"] > 0  # features reused
    second_start = datetime.fromisoformat(began).timestamp()
    sweep_files = list((work / "sweeps").rglob("*.json"))
    assert sweep_files and all(p.stat().st_mtime < second_start for p in sweep_files)


def test_the_cli_output_has_no_tensorflow_noise(lifecycle):
    for stderr in lifecycle.err.values():
        assert not NOISE.findall(stderr), stderr[-3000:]
        assert "run folder:" in stderr  # the run's own log lines still show
    assert "error" not in lifecycle.runs_ls.stderr.lower()
