"""The dropout sweep (F5) as its own Prefect flow: one task run per training of the grid.

`dropout_sweep(spec, workers)` trains every distinct (rate, placement, seed) of
`tasks.dropout.sweep.trainings(spec)` as a task run named `sweep-<placement>-<rate>-seed<s>`
and returns `summarize(...)` (JSON-able: it is the flow's result). The dropout-report stage
calls it through `run_sweep`; it is also deployable on its own, with a `SweepSpec` parameter.

How the task runs execute (measured on this project's 2-core machine, shared with other work,
on the 400-image demo: 12 trainings of 5 epochs on 320 cached features):
  * `workers=1` (default): the task runs are called one after another on the flow's main
    thread. TensorFlow is not fork-safe and Keras is not thread-safe, so the default thread
    task runner is never used for training; each training is still its own task run in the
    UI. Sweep 184 s, of which 145 s training.
  * `workers>1`: `.map` over a `ProcessPoolTaskRunner` (spawned processes, each importing
    TensorFlow and loading the cached features once). It works and gives bit-identical
    results, but with 2 workers on 2 cores it took 162 s: one training already keeps both
    cores busy, so each took twice as long. It pays off with more cores than workers x TF's
    threads.

    summary = run_sweep(SweepSpec(cache_dir=..., manifest_path=..., n_classes=2,
                                  feature_shape=(7, 7, 768)), workers=1)
"""

from __future__ import annotations

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ProcessPoolTaskRunner

from tasks.dropout.sweep import SweepSpec, summarize, train_cell, trainings

DEFAULT_POOL = 2

sweep_cell_task = task(
    train_cell,
    name="sweep-cell",
    task_run_name="sweep-{cell.placement}-{cell.rate}-seed{cell.seed}",
    cache_policy=NO_CACHE,
)


@flow(
    name="dropout-sweep",
    task_runner=ProcessPoolTaskRunner(max_workers=DEFAULT_POOL),
    log_prints=True,
)
def dropout_sweep(spec: SweepSpec, workers: int = 1) -> dict:
    """Train the sweep grid of `spec` on its cached features; returns the summary."""
    cells = trainings(spec)
    if workers > 1:
        futures = sweep_cell_task.map(spec=unmapped(spec), cell=cells)
        results = [future.result() for future in futures]
    else:
        results = [sweep_cell_task(spec, cell) for cell in cells]
    return summarize(spec, results)


def run_sweep(spec: SweepSpec, workers: int = 1) -> dict:
    """Run `dropout_sweep` (as a subflow when called inside a flow or task run)."""
    sweep = dropout_sweep
    if workers > DEFAULT_POOL:
        sweep = dropout_sweep.with_options(task_runner=ProcessPoolTaskRunner(max_workers=workers))
    return sweep(spec, workers)
