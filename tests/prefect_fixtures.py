"""Session fixtures: ONE real Prefect server, ONE `inception-retrain serve`, ONE set of runs.

tests/conftest.py imports these, so test_prefect_server.py and test_browser.py share them:

  * `prefect_server`  `prefect server start` on a free loopback port (temporary PREFECT_HOME,
                      analytics off, scheduler off so no 02:00 run can sneak in, and a 2 s
                      concurrency-slot retry instead of 30 s); torn down at session end.
  * `served`          `inception-retrain serve` against it, as a subprocess in an empty folder.
  * `server_runs`     two runs of nightly-retrain triggered at once, then awaited: `first`
                      (Prefect client, tiny demo config; must complete) and `corrupt`
                      (`prefect deployment run` while `first` is queued or running; every
                      image invalid, so it must wait for `first` and then fail in ingest).

`api_client(url)` points the Prefect client of this process at the server for a block.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SERVER_START_TIMEOUT_S = 90
SERVE_START_TIMEOUT_S = 120
RUNS_TIMEOUT_S = 420
NIGHTLY = "retrain/nightly-retrain"


@dataclass
class PrefectServer:
    url: str  # UI, e.g. http://127.0.0.1:41234
    api_url: str  # url + "/api"
    log: Path


@dataclass
class ServerRuns:
    server: PrefectServer
    workdir: Path
    config: dict  # the tiny config of `first`
    corrupt_config: dict
    first: str  # flow run ids
    corrupt: str
    serve_log: Path


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def api_client(api_url: str):
    """A sync Prefect client of this process talking to `api_url`."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        get_client(sync_client=True) as client,
    ):
        yield client


def _stop(process: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM the process group this fixture started, then SIGKILL what is left."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # children left in the group
        os.killpg(process.pid, signal.SIGKILL)


def child_env(**updates: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",  # 20 s is too short on 2 busy cores
    )
    env.update(updates)
    return env


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> PrefectServer:
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = child_env(
        PREFECT_HOME=str(home),
        PREFECT_UI_API_URL=f"{url}/api",  # the UI calls the API here, not on port 4200
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
        PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS="2",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
    )
    log = home / "server.log"
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"prefect server exited with {process.returncode}:\n{tail(log)}")
            try:
                with urllib.request.urlopen(f"{url}/api/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prefect server not healthy after {SERVER_START_TIMEOUT_S}s")
            time.sleep(0.5)
        yield PrefectServer(url=url, api_url=f"{url}/api", log=log)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def served(prefect_server, tmp_path_factory) -> Path:
    """`inception-retrain serve` against the test server; yields its log file."""
    folder = tmp_path_factory.mktemp("serve")
    log = folder / "serve.log"
    env = child_env(
        PREFECT_API_URL=prefect_server.api_url,
        PREFECT_HOME=str(folder / "prefect-home"),
        PREFECT_RUNNER_POLL_FREQUENCY="2",  # pick up (re-)scheduled runs quickly
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
    )
    command = shutil.which("inception-retrain", path=str(Path(sys.executable).parent))
    assert command, "the inception-retrain console script is not installed in this venv"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [command, "serve"],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVE_START_TIMEOUT_S
        while "being served" not in log.read_text(errors="replace"):
            if process.poll() is not None:
                pytest.fail(f"serve exited with {process.returncode}:\n{tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"serve not ready after {SERVE_START_TIMEOUT_S}s:\n{tail(log)}")
            time.sleep(0.5)
        yield log
    finally:
        _stop(process)


def write_corrupt_dataset(root: Path) -> Path:
    """Two class folders in which every file has an image extension but is not an image."""
    for label in ("cats", "dogs"):
        folder = root / label
        folder.mkdir(parents=True)
        (folder / "empty.jpg").write_bytes(b"")
        (folder / "text.png").write_text("this is not a picture\n")
        (folder / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    return root


def tiny_config(data: Path, workdir: Path) -> dict:
    """A whole retrain in seconds: 75 px, a small head, 1 epoch, a sweep of 1 repeat x 2 folds."""
    return {
        "data": str(data),
        "weights": "random:0",
        "workdir": str(workdir),
        "image_size": 75,
        "head": {"hidden_units": [64, 128]},
        "split_fractions": [0.5, 0.2, 0.3],
        "epochs": 1,
        "batch_size": 16,
        "patience": 0,
        "sweep_rates": [0.0, 0.5],
        "sweep_placements": ["after_dense2"],
        "sweep_folds": 2,
        "sweep_repeats": 1,
        "sweep_epochs": 1,
        "mc_passes": 2,
    }


def deployment_runs(client, deployment_id) -> list:
    from prefect.client.schemas.filters import DeploymentFilter

    return client.read_flow_runs(deployment_filter=DeploymentFilter(id={"any_": [deployment_id]}))


@pytest.fixture(scope="session")
def server_runs(prefect_server, served, small_demo_dir, tmp_path_factory) -> ServerRuns:
    folder = tmp_path_factory.mktemp("server-runs")
    workdir = folder / "workdir"
    config = tiny_config(small_demo_dir, workdir)
    corrupt_config = {**config, "data": str(write_corrupt_dataset(folder / "corrupt"))}
    with api_client(prefect_server.api_url) as client:
        deployment = client.read_deployment_by_name(NIGHTLY)
        first = client.create_flow_run_from_deployment(
            deployment.id, parameters={"config": config}
        ).id
        # The documented manual trigger, while `first` is queued or running.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "prefect",
                "deployment",
                "run",
                NIGHTLY,
                "--params",
                json.dumps({"config": corrupt_config}),
            ],
            env=child_env(
                PREFECT_API_URL=prefect_server.api_url, PREFECT_HOME=str(folder / "cli-home")
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        corrupt = next(r.id for r in deployment_runs(client, deployment.id) if r.id != first)
        deadline = time.monotonic() + RUNS_TIMEOUT_S
        while not all(client.read_flow_run(i).state.is_final() for i in (first, corrupt)):
            if time.monotonic() > deadline:
                pytest.fail(f"runs not finished after {RUNS_TIMEOUT_S}s:\n{tail(served)}")
            time.sleep(2)
    return ServerRuns(
        server=prefect_server,
        workdir=workdir,
        config=config,
        corrupt_config=corrupt_config,
        first=str(first),
        corrupt=str(corrupt),
        serve_log=served,
    )
