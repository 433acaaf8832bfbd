"""Shards on a Dask cluster that cannot hang the run: time-outs enforced from the flow's side.

    results = run_shards(lambda shard: extract_shard_task.submit(shard, job), plan.shards,
                         policy, name=lambda shard: shard.index)

Every fan-out on a cluster (extraction, prediction, the sweep) waits on its task runs here,
never with a bare `future.result()`. Why from the flow's side: Prefect's `timeout_seconds`
interrupts a task by raising an exception in its thread, which cannot interrupt a blocking C
call (a stuck TensorFlow op stays RUNNING), and `client.cancel` frees the scheduler's slot but
not the worker's thread, which Python cannot kill: the scheduler would then hand that worker
new shards, queued behind the stuck one. So:
  * each shard has two deadlines (`ShardPolicy`): `start_timeout_s` from submission until a
    worker's thread starts it, `timeout_s` from then until it finishes. Starts are reported
    by a worker plugin (`ReportStarts`) on a Dask event topic, so queueing and a new
    worker's start-up do not count against a shard;
  * a shard past a deadline is cancelled, its worker process replaced (`restart_workers` when
    it has a nanny, as `dask worker` and `local:N` workers do by default; else the process is
    made to exit from its event loop, which still answers while a task thread is stuck), its
    Prefect task run marked Crashed, and the shard submitted again, up to `attempts` runs;
  * at most as many shards are in flight as the cluster has threads, so a queued shard is
    not a late one;
  * a worker that dies is Dask's to handle: it runs the shard again elsewhere (shards are
    idempotent: content-named parts);
  * a scheduler that goes away cancels every future at once: a one-line `ShardError`;
  * a scheduler that freezes (a paused VM: the kernel still acknowledges TCP, so nothing
    times out by itself) is probed with a bounded call whenever a shard is late and every
    `PROBE_EVERY_S`: a one-line `ShardError` too. Every call to the scheduler here is bounded
    (`bounded`), since Dask's own admin calls take no time-out.
A failed task run's exception is raised as it is (a PipelineError stays one line).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from inception_retrain.plumbing.errors import PipelineError
from inception_retrain.plumbing.shard_policy import ShardPolicy

log = logging.getLogger("inception_retrain.flows.shards")

POLL_S = 0.5  # how often in-flight shards are looked at
PROBE_TIMEOUT_S = 10.0  # a bounded call to the scheduler (or a result fetch) gives up then
PROBE_EVERY_S = 30.0  # the scheduler is probed this often even when nothing is late
RESTART_TIMEOUT_S = 60.0  # a nanny's restart of a hung worker
STARTED_TOPIC = "inception-retrain-shard-started"


class ShardError(PipelineError):
    """A shard, or the cluster, failed for good (one line)."""


class ReportStarts(WorkerPlugin):
    """Dask worker plugin: an event on `STARTED_TOPIC` whenever a task starts executing, so
    a shard's time-out counts from then (see module docstring)."""

    name = "inception-retrain-report-starts"
    idempotent = True

    def setup(self, worker) -> None:
        self.worker = worker

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish == "executing":
            self.worker.log_event(STARTED_TOPIC, {"key": key, "worker": self.worker.address})


def bounded(call: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """`call()` with a time-out: TimeoutError if it has not returned by then (it is left
    running in a daemon thread: Dask's admin calls cannot be interrupted)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as error:  # handed to the caller
            box["error"] = error

    thread = threading.Thread(target=target, daemon=True, name=f"bounded-{what}")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"{what}: no answer within {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def scheduler_alive(client) -> bool:
    try:
        bounded(lambda: client.run_on_scheduler(_true), PROBE_TIMEOUT_S, "run_on_scheduler")
        return True
    except Exception:
        return False


def _true() -> bool:
    return True


def _exit_now() -> None:
    os._exit(1)


def recycle_worker(client, address: str) -> str:
    """Free a hung task's thread by replacing its worker's process; says how."""
    info = bounded(client.scheduler_info, PROBE_TIMEOUT_S, "scheduler_info")
    if info["workers"].get(address, {}).get("nanny"):
        restart = partial(client.restart_workers, [address], timeout=RESTART_TIMEOUT_S)
        bounded(restart, RESTART_TIMEOUT_S + PROBE_TIMEOUT_S, "restart_workers")
        return "restarted by its nanny"
    # No nanny: exit from the worker's event loop. The reply never comes (the process is
    # gone), which surfaces as an error or a time-out: expected. Whatever supervises that
    # `dask worker` (systemd, Kubernetes) starts it again; until then the cluster is smaller.
    with contextlib.suppress(Exception):
        stop = partial(client.run, _exit_now, workers=[address], on_error="return")
        bounded(stop, PROBE_TIMEOUT_S, "stop worker")
    return "process stopped (no nanny to restart it)"


def _mark_crashed(future, message: str) -> None:
    """The Prefect task run of a shard whose worker was replaced: Crashed, not RUNNING
    forever (best effort; the run goes on without it)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    with contextlib.suppress(Exception), get_client(sync_client=True) as prefect:
        prefect.set_task_run_state(future.task_run_id, Crashed(message=message), force=True)


@dataclass
class _InFlight:
    item: Any
    attempt: int
    submitted: float
    started: float | None = None


def _threads(client) -> int:
    info = bounded(client.scheduler_info, PROBE_TIMEOUT_S, "scheduler_info")
    return max(1, sum(int(w.get("nthreads", 1)) for w in info["workers"].values()))


def _lost_scheduler(client) -> ShardError:
    """The error for a scheduler that went away; closes the client first, quietly: its
    attempts to reconnect would end in a logged traceback when the task runner closes it."""
    address = getattr(getattr(client, "scheduler", None), "address", "") or "the scheduler"
    quiet = [logging.getLogger(name) for name in ("distributed.client", "distributed.utils")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.suppress(Exception):
            bounded(lambda: client.close(timeout=5), PROBE_TIMEOUT_S, "close")
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    return ShardError(
        f"lost the connection to the Dask scheduler at {address}: is `dask scheduler` "
        "running? (the parts already written are kept: a rerun computes only the rest)"
    )


def _frozen_scheduler(client) -> ShardError:
    address = getattr(getattr(client, "scheduler", None), "address", "") or "the scheduler"
    return ShardError(
        f"the Dask scheduler at {address} did not answer within {PROBE_TIMEOUT_S:g} s "
        "(hung or paused?): restart it and run again"
    )


def run_shards(
    submit: Callable[[Any], Any],
    items: Sequence[Any],
    policy: ShardPolicy,
    *,
    name: Callable[[Any], Any] = lambda item: item,
    what: str = "shard",
    client=None,
    events: list[dict] | None = None,
) -> list[Any]:
    """`submit(item)` (a task's `.submit`: a PrefectDaskFuture) for every item, waited on
    with `policy` (see module docstring); the results, in the order of `items`.

    `client`: the Dask client (default: the flow's DaskTaskRunner's). `events`, if given,
    collects what happened (submitted, started, finished, late, worker replaced)."""
    from distributed import wait as dask_wait
    from distributed.client import FutureCancelledError, FuturesCancelledError
    from prefect.context import FlowRunContext

    if not items:
        return []
    client = client or FlowRunContext.get().task_runner.client
    clock = time.monotonic
    began = clock()
    events = events if events is not None else []

    def note(event: str, **data) -> None:
        events.append({"t": round(clock() - began, 2), "event": event, **data})
        if event in ("late", "worker replaced", "cancelled"):
            log.warning("%s %s %s", what, event, data)

    try:
        bounded(lambda: client.register_plugin(ReportStarts()), PROBE_TIMEOUT_S, "plugin")
        window = _threads(client)
    except Exception:
        if not scheduler_alive(client):
            raise _frozen_scheduler(client) from None
        raise
    starts: dict[str, float] = {}
    starts_lock = threading.Lock()

    def on_start(event) -> None:
        _, message = event
        with starts_lock:
            starts.setdefault(message["key"], clock())

    client.subscribe_topic(STARTED_TOPIC, on_start)
    todo = list(range(len(items)))
    attempts = [0] * len(items)
    results: dict[int, Any] = {}
    inflight: dict[Any, tuple[int, _InFlight]] = {}
    last_probe = clock()

    def launch(index: int) -> None:
        attempts[index] += 1
        future = submit(items[index])
        inflight[future] = (index, _InFlight(items[index], attempts[index], clock()))
        note("submitted", item=name(items[index]), attempt=attempts[index])

    def again(index: int, why: str) -> None:
        if attempts[index] >= policy.attempts:
            raise ShardError(
                f"{what} {name(items[index])} {why} {attempts[index]} time(s): giving up "
                f"(shard_timeout_s={policy.timeout_s:g}, "
                f"shard_start_timeout_s={policy.start_timeout_s:g})"
            )
        todo.insert(0, index)

    try:
        while todo or inflight:
            while todo and len(inflight) < window:
                launch(todo.pop(0))
            wrapped = {future.wrapped_future: future for future in inflight}
            try:
                with client.as_current():  # distributed.wait uses the current client
                    done, _ = dask_wait(list(wrapped), POLL_S, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            except FuturesCancelledError as error:
                if "scheduler-connection-lost" in str(error):
                    raise _lost_scheduler(client) from None
                done = {future for future in wrapped if future.cancelled()}
            for finished in done:
                future = wrapped[finished]
                index, flight = inflight.pop(future)
                try:
                    # a round trip to fetch it (timeout=0 would never fetch at all)
                    results[index] = future.result(timeout=PROBE_TIMEOUT_S)
                except FutureCancelledError as error:
                    if "scheduler-connection-lost" in str(getattr(error, "reason", error)):
                        raise _lost_scheduler(client) from None
                    note("cancelled", item=name(flight.item), attempt=flight.attempt)
                    again(index, "was cancelled")
                    continue
                except TimeoutError:
                    if not scheduler_alive(client):
                        raise _frozen_scheduler(client) from None
                    raise ShardError(
                        f"{what} {name(flight.item)} finished, but its result could not be "
                        f"fetched within {PROBE_TIMEOUT_S:g} s: is its worker reachable?"
                    ) from None
                note("finished", item=name(flight.item), attempt=flight.attempt)
            now = clock()
            with starts_lock:
                for future, (_, flight) in inflight.items():
                    key = future.wrapped_future.key
                    if flight.started is None and key in starts:
                        flight.started = starts[key]
                        note("started", item=name(flight.item), attempt=flight.attempt)
            late = [
                (future, index, flight)
                for future, (index, flight) in inflight.items()
                if (flight.started is None and now - flight.submitted > policy.start_timeout_s)
                or (flight.started is not None and now - flight.started > policy.timeout_s)
            ]
            if late or now - last_probe > PROBE_EVERY_S:
                last_probe = now
                if not scheduler_alive(client):
                    raise _frozen_scheduler(client)
            if not late:
                continue
            try:
                processing = bounded(client.processing, PROBE_TIMEOUT_S, "processing")
            except TimeoutError:
                raise _frozen_scheduler(client) from None
            where = {key: worker for worker, keys in processing.items() for key in keys}
            for future, index, flight in late:
                never_started = flight.started is None
                address = where.get(future.wrapped_future.key)
                note("late", item=name(flight.item), attempt=flight.attempt, worker=address)
                cancel = partial(client.cancel, [future.wrapped_future], force=True)
                bounded(cancel, PROBE_TIMEOUT_S, "cancel")
                inflight.pop(future)
                why = (
                    f"did not start within {policy.start_timeout_s:g} s (no free worker?)"
                    if never_started
                    else f"did not finish within {policy.timeout_s:g} s"
                )
                if address is not None and not never_started:
                    how = recycle_worker(client, address)
                    note("worker replaced", worker=address, how=how)
                    _mark_crashed(future, f"{why}: its worker {address} was {how}")
                    window = _threads(client)
                again(index, why)
    except BaseException:
        with contextlib.suppress(Exception):  # best effort: the scheduler may be gone
            rest = [future.wrapped_future for future in inflight]
            bounded(lambda: client.cancel(rest, force=True), PROBE_TIMEOUT_S, "cancel the rest")
        raise
    finally:
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(STARTED_TOPIC)
    return [results[index] for index in range(len(items))]
