"""The retrain flow: ingest -> extract -> train -> evaluate -> dropout report -> export/promote.

The flow only wires stages; each stage lives in `tasks/` as a plain function with a `@task`
wrapper. Stages hand each other small typed artifacts (paths plus fingerprints), so Prefect
never hashes or pickles a model or an array, and every stage can be re-run alone.

TensorFlow stages run on the flow's main thread (tasks are called, not submitted): TF is not
fork-safe and a Keras model must not be shared across threads.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext

from inception_retrain.config import RetrainConfig
from inception_retrain.files import atomic_write_json, new_run_dir
from inception_retrain.run_folder import write_failure_summary
from tasks.dropout_report import dropout_report_task
from tasks.evaluate import evaluate_task
from tasks.export import export_task
from tasks.extract import extract_task
from tasks.ingest import ingest_task
from tasks.registry import promote_task
from tasks.train import train_task


@flow(
    name="retrain",
    log_prints=True,
    on_failure=[write_failure_summary],
    on_crashed=[write_failure_summary],
)
def retrain(config: RetrainConfig) -> str:
    """Retrain the head on `config.data` and write every report into a new run folder."""
    logger = get_run_logger()
    run_dir = new_run_dir(config.workdir)
    context = FlowRunContext.get()
    flow_run_id = str(context.flow_run.id) if context and context.flow_run else None
    atomic_write_json(
        run_dir / "config.json", {"flow_run_id": flow_run_id, **config.model_dump(mode="json")}
    )
    logger.info("run folder: %s", run_dir)

    manifest = ingest_task(config, run_dir)
    cache = extract_task(manifest, config, run_dir)
    head = train_task(manifest, cache, config, run_dir)
    evaluation = evaluate_task(manifest, cache, head, config, run_dir)
    dropout_report_task(manifest, cache, head, config, run_dir)
    version = export_task(manifest, cache, head, evaluation, config, run_dir)
    promote_task(version, evaluation, config, run_dir)
    return str(run_dir)


def run_retrain(config: RetrainConfig) -> tuple[Path | None, bool, str]:
    """Run the flow once in-process; returns (run folder, succeeded, one-line message)."""
    state = retrain(config, return_state=True)
    if state.is_completed():
        return Path(state.result()), True, "completed"
    from inception_retrain.run_folder import run_dir_for_flow_run

    run_dir = run_dir_for_flow_run(config.workdir, state.state_details.flow_run_id)
    return run_dir, False, state.message or "the run failed"
