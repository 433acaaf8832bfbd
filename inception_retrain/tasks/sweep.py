"""Stage `sweep-cell`: one training of the dropout sweep (`inception_retrain.dropout.sweep`),
stored in the sweep results as soon as it finishes, so an interrupted sweep keeps it."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.dropout.sweep import SweepCell, SweepSpec, train_cell
from inception_retrain.dropout.sweep_store import SweepStore
from inception_retrain.dropout.sweep_summary import TrainingResult


@task(
    name="sweep-cell",
    task_run_name="sweep-{cell.name}",
    cache_policy=NO_CACHE,
)
def sweep_cell_task(spec: SweepSpec, cell: SweepCell, store: SweepStore | None) -> TrainingResult:
    result = train_cell(spec, cell)
    if store is not None:
        store.save(spec, cell, result)
    return result
