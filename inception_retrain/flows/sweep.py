"""The dropout sweep (F5) as its own Prefect flow: one task run per training it computes.

`dropout_sweep(spec, workers)` needs every training of
`inception_retrain.dropout.sweep.trainings(spec)`: each config once per repeat and fold of the
cross-fit. Results already in the sweep store (`inception_retrain.dropout.sweep_store`,
WORKDIR/sweeps) are read in the flow itself, without a task run; each missing training runs
as a task run named `sweep-<placement>-<rate>-r<repeat>f<fold>`, which stores its result as
soon as it finishes (an interrupted sweep keeps what it trained).
Returns the `SweepSummary` of `summarize(...)` with `cache` = {dir, computed, reused}. A
rerun on unchanged data trains nothing. The retrain flow calls it through `run_sweep` and
hands its summary to the dropout-report stage; it is also deployable on its own, with a
`SweepSpec` parameter (results are cached under `spec.sweeps_dir`, else WORKDIR/sweeps beside
WORKDIR/cache/<fingerprint>).

How the task runs execute:
  * `workers=1` (default): the task runs are called one after another on the flow's main
    thread. TensorFlow is not fork-safe and Keras is not thread-safe, so the default thread
    task runner is never used for training; each training is still its own task run in the
    UI. All trainings share the process's one traced head (`dropout.sweep_model`), so a
    training costs its epochs and little else (bench/sweep.py).
  * `workers>1`: `.map` over a `ProcessPoolTaskRunner` (spawned processes, each importing
    TensorFlow, loading the cached features and tracing its head once). It gives
    bit-identical results, but on 2 cores one training already keeps both cores busy; it
    pays off with more cores than workers x TF's threads.

    summary = run_sweep(SweepSpec(cache_dir=..., manifest_path=..., n_classes=2,
                                  feature_shape=(7, 7, 768)), workers=1)
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, unmapped
from prefect.task_runners import ProcessPoolTaskRunner

from inception_retrain.dropout.sweep import SweepSpec, summarize, trainings
from inception_retrain.dropout.sweep_store import SweepStore
from inception_retrain.dropout.sweep_summary import CacheUse, SweepSummary
from inception_retrain.flows.cluster import task_runner
from inception_retrain.flows.shards import run_shards
from inception_retrain.plumbing.shard_policy import ShardPolicy
from inception_retrain.tasks.sweep import sweep_cell_task

DEFAULT_POOL = 2


@flow(
    name="dropout-sweep",
    task_runner=ProcessPoolTaskRunner(max_workers=DEFAULT_POOL),
    log_prints=True,
)
def dropout_sweep(
    spec: SweepSpec,
    workers: int = 1,
    address: str | None = None,
    shard_policy: ShardPolicy | None = None,
) -> SweepSummary:
    """Train the sweep grid of `spec` on its cached features, reusing cached results;
    returns the summary."""
    started = time.perf_counter()
    cells = trainings(spec)
    store = SweepStore.for_spec(spec)
    results = [store.load(spec, cell) if store else None for cell in cells]
    missing = [cell for cell, result in zip(cells, results, strict=True) if result is None]
    get_run_logger().info(
        "sweep: %d trainings, %d reused from %s, %d to train",
        len(cells),
        len(cells) - len(missing),
        store.directory if store else "(no cache)",
        len(missing),
    )
    if address and len(missing) > 1:  # each training a shard, with its time-outs
        policy = shard_policy or ShardPolicy()
        cell_task = sweep_cell_task.with_options(retries=policy.retries)
        computed = iter(
            run_shards(
                lambda cell: cell_task.submit(spec, cell, store),
                missing,
                policy,
                name=lambda cell: cell.name,
                what="training",
            )
        )
    elif workers > 1 and len(missing) > 1:
        futures = sweep_cell_task.map(spec=unmapped(spec), cell=missing, store=unmapped(store))
        computed = iter([future.result() for future in futures])
    else:
        computed = iter([sweep_cell_task(spec, cell, store) for cell in missing])
    results = [result if result is not None else next(computed) for result in results]
    summary = summarize(spec, results)
    summary.cache = CacheUse(
        dir=str(store.directory) if store else None,
        computed=len(missing),
        reused=len(cells) - len(missing),
    )
    summary.wall_seconds = time.perf_counter() - started
    return summary


def run_sweep(
    spec: SweepSpec,
    workers: int = 1,
    address: str | None = None,
    shard_policy: ShardPolicy | None = None,
) -> SweepSummary:
    """Run `dropout_sweep` (as a subflow when called inside a flow or task run); on the Dask
    cluster at `address` when given, each training with the time-outs of `shard_policy`."""
    sweep = dropout_sweep
    if address:
        sweep = dropout_sweep.with_options(task_runner=task_runner(address))
    elif workers > DEFAULT_POOL:
        sweep = dropout_sweep.with_options(task_runner=ProcessPoolTaskRunner(max_workers=workers))
    return sweep(spec, workers, address, shard_policy)
