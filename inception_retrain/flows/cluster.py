"""Where a run's heavy stages execute: one process, or a Dask cluster through prefect-dask.

`dask_cluster(spec)` is entered once per run, before any stage (the preflight has already
checked that every remote location and a `tcp://` scheduler can be reached); `spec` is the
run's parsed `--cluster` (`cluster_spec.ClusterSpec`):
  * None: yields None, and stages run in this process as they always did;
  * `local:N`: starts a `distributed.LocalCluster` of N worker processes with one
    thread each (spawned, not forked: TensorFlow is not fork-safe), and closes it when the
    run ends;
  * `tcp://HOST:PORT`: connects to a running scheduler (workers started with
    `dask worker tcp://HOST:PORT`); a scheduler that does not answer within
    `CONNECT_TIMEOUT_S` is a one-line ConfigError.
It registers `BoundTensorFlowThreads` (TensorFlow's pools sized to each worker's threads)
and `QuietStderr` (the CLI's stderr filter) on the cluster and yields the scheduler's
address. Subflows run their fan-out on it with
`task_runner(address)`, a prefect-dask `DaskTaskRunner`; the worker processes live for the
whole run, so each loads the backbone (or a model) once, whatever the number of shards.

    with dask_cluster(config.cluster) as address:        # None: one process
        cache = run_extraction(manifest, config.extraction, run_dir, address)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from inception_retrain.plumbing.cluster_spec import ClusterSpec
from inception_retrain.plumbing.errors import ConfigError
from inception_retrain.runs.preflight import SCHEDULER_TIMEOUT_S, check_scheduler
from inception_retrain.tasks.runtime import BoundTensorFlowThreads, QuietStderr

CONNECT_TIMEOUT_S = SCHEDULER_TIMEOUT_S


def _prefect_env() -> dict[str, str]:
    """The Prefect API this process talks to, for the workers it starts: without it, each
    worker of a run on Prefect's temporary server would start a server of its own, and the
    shards' task runs would not show in the run. Set PREFECT_API_URL for `dask worker`s."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        url = str(client.api_url).rstrip("/")
    return {"PREFECT_API_URL": url} if url.startswith("http") else {}


def _register_plugins(address: str) -> None:
    from distributed import Client

    with Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False) as client:
        client.register_plugin(QuietStderr())
        client.register_plugin(BoundTensorFlowThreads())


@contextlib.contextmanager
def dask_cluster(spec: ClusterSpec | None) -> Iterator[str | None]:
    """The scheduler address of `spec` for the block (see module docstring)."""
    if spec is None:
        yield None
        return
    if spec.kind == "scheduler":
        check_scheduler(spec)  # a refused connection fails at once, not after the timeout
        try:
            _register_plugins(spec.address)
        except (OSError, TimeoutError) as error:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {spec.address} within "
                f"{CONNECT_TIMEOUT_S} s ({type(error).__name__}): is `dask scheduler` running?"
            ) from None
        yield spec.address
        return
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=spec.workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
        env=_prefect_env(),
    ) as local:
        _register_plugins(local.scheduler_address)
        yield local.scheduler_address


def task_runner(address: str):
    """A prefect-dask task runner on the scheduler at `address`."""
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=address)
