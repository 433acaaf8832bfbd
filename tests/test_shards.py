"""Shards on a Dask cluster cannot hang or fail silently (`flows/shards.py`).

The scenarios run real `dask scheduler` and `dask worker` processes on 127.0.0.1 (with
nannies, as `dask worker` starts by default), the session's real Prefect server, and a flow
of small Prefect tasks (tests/shard_tasks.py) whose shard 1 blocks in C, as a stuck
TensorFlow op would, and tells the test where before it does. What each shows:
  * a shard that hangs once: it is cancelled at its time-out, its worker restarted by its
    nanny, its task run marked Crashed, and it runs again; every result arrives;
  * a shard that always hangs: the run fails with one line after `attempts` runs;
  * a worker killed mid-shard: Dask runs the shard elsewhere; every result arrives, and
    nothing is late;
  * the scheduler killed: one line at once; the scheduler frozen (SIGSTOP): one line, once
    a shard is late and the bounded probe gets no answer.
They take minutes, so they are marked `extended` (not in the default run: `make test-extended`);
the extraction's own scenarios on a cluster are in tests/test_scale_out.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from dask_fixtures import DaskProcesses
from prefect_fixtures import child_env

from inception_retrain.flows import shards
from inception_retrain.flows.shards import ShardError, bounded
from inception_retrain.plumbing.shard_policy import ShardPolicy

TESTS = Path(__file__).resolve().parent
ITEMS = [0, 1, 2, 3]
EXPECTED = [0, 10, 20, 30]
WATCH_TIMEOUT_S = 180


def test_bounded_returns_raises_or_gives_up():
    assert bounded(lambda: 7, 5, "seven") == 7
    with pytest.raises(ZeroDivisionError):
        bounded(lambda: 1 / 0, 5, "divide")
    never = threading.Event()
    with pytest.raises(TimeoutError, match="wait: no answer within 0.2 s"):
        bounded(never.wait, 0.2, "wait")
    never.set()


def test_the_config_sets_the_shard_policy_and_its_defaults_are_defined_once():
    from inception_retrain.config import RetrainConfig

    assert RetrainConfig().shard_policy == ShardPolicy()
    config = RetrainConfig(
        shard_timeout_s=30, shard_start_timeout_s=90, shard_attempts=3, shard_retries=0
    )
    assert config.shard_policy == ShardPolicy(
        timeout_s=30, start_timeout_s=90, attempts=3, retries=0
    )
    with pytest.raises(ValueError, match="shard_attempts"):
        RetrainConfig(shard_attempts=0)


# --- scenarios on real processes ----------------------------------------------------------


@pytest.fixture
def cluster(prefect_server, tmp_path):
    env = child_env(PREFECT_API_URL=prefect_server.api_url, PYTHONPATH=str(TESTS))
    with DaskProcesses(tmp_path / "dask", env) as processes:
        processes.scheduler()
        processes.worker("w1")
        processes.worker("w2")
        processes.wait_for_workers(2)
        yield processes


def run(cluster, prefect_server, policy, stall: Path, mode: str = "once"):
    """The test flow on the cluster, in this process, reporting to the session's server;
    its final state."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_dask import DaskTaskRunner
    from shard_tasks import shards_flow

    runner = DaskTaskRunner(address=cluster.address)
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        return shards_flow.with_options(task_runner=runner)(
            ITEMS, policy, 1, str(stall), mode, return_state=True
        )


def when_stalled(stall: Path, act) -> threading.Thread:
    """Call act(pid of the stalled worker) once shard 1 has stalled (a watcher thread)."""

    def watch() -> None:
        deadline = time.monotonic() + WATCH_TIMEOUT_S
        while not (stall.exists() and stall.read_text()):
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
        act(int(stall.read_text()))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def events(kind: str) -> list[dict]:
    from shard_tasks import EVENTS

    return [e for e in EVENTS if e["event"] == kind]


def task_run_states(prefect_server, flow_run_id) -> dict[str, list[str]]:
    from prefect.client.schemas.filters import FlowRunFilter
    from prefect_fixtures import api_client

    with api_client(prefect_server.api_url) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]}))
    states: dict[str, list[str]] = {}
    for task_run in runs:
        states.setdefault(task_run.name, []).append(task_run.state.type.value)
    return states


def failure(state) -> str:
    assert state.is_failed(), state
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ShardError), repr(error)
    message = str(error)
    assert "\n" not in message
    return message


@pytest.mark.extended
def test_a_hung_shard_is_cancelled_its_worker_restarted_and_the_shard_run_again(
    cluster, prefect_server, tmp_path
):
    stall = tmp_path / "stall"
    state = run(cluster, prefect_server, ShardPolicy(timeout_s=20, attempts=2), stall)
    assert state.is_completed(), state
    assert state.result() == EXPECTED
    (late,) = events("late")
    assert late["item"] == 1 and late["attempt"] == 1
    (replaced,) = events("worker replaced")
    assert replaced["how"] == "restarted by its nanny"
    assert [e["attempt"] for e in events("finished") if e["item"] == 1] == [2]
    assert len(cluster.wait_for_workers(2)) == 2  # the restarted worker is back
    deadline = time.monotonic() + 60  # task-run states reach the server as events
    while True:
        states = task_run_states(prefect_server, state.state_details.flow_run_id)
        if sorted(states.get("test-shard-1", [])) == ["COMPLETED", "CRASHED"]:
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.5)


@pytest.mark.extended
def test_a_shard_that_always_hangs_fails_the_run_in_one_line(cluster, prefect_server, tmp_path):
    policy = ShardPolicy(timeout_s=10, attempts=2)
    state = run(cluster, prefect_server, policy, tmp_path / "stall", mode="always")
    message = failure(state)
    assert message.startswith("shard 1 did not finish within 10 s 2 time(s): giving up")
    assert len(events("late")) == 2


@pytest.mark.extended
def test_a_worker_killed_mid_shard_loses_nothing(cluster, prefect_server, tmp_path):
    stall = tmp_path / "stall"
    when_stalled(stall, lambda pid: os.kill(pid, signal.SIGKILL))
    state = run(cluster, prefect_server, ShardPolicy(timeout_s=300, attempts=1), stall)
    assert state.is_completed(), state
    assert state.result() == EXPECTED  # Dask ran shard 1 again, by itself
    assert not events("late") and not events("worker replaced")


@pytest.mark.extended
def test_a_killed_scheduler_fails_the_run_at_once_in_one_line(cluster, prefect_server, tmp_path):
    stall = tmp_path / "stall"
    when_stalled(stall, lambda pid: cluster.signal("scheduler", signal.SIGKILL))
    state = run(cluster, prefect_server, ShardPolicy(timeout_s=300, attempts=1), stall)
    message = failure(state)
    assert message.startswith(
        f"lost the connection to the Dask scheduler at {cluster.address}: is `dask scheduler` "
        "running?"
    )
    assert not events("late")  # noticed at once, not at a time-out


@pytest.mark.extended
def test_a_frozen_scheduler_fails_the_run_in_one_line(
    cluster, prefect_server, tmp_path, monkeypatch
):
    monkeypatch.setattr(shards, "PROBE_TIMEOUT_S", 3.0)
    stall = tmp_path / "stall"
    when_stalled(stall, lambda pid: cluster.signal("scheduler", signal.SIGSTOP))
    state = run(cluster, prefect_server, ShardPolicy(timeout_s=10, attempts=2), stall)
    message = failure(state)
    assert message.startswith(f"the Dask scheduler at {cluster.address} did not answer within 3 s")
