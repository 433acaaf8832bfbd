"""The retrain flow: ingest -> extract -> train -> evaluate -> dropout report -> export/promote.

The flow only wires stages; each stage lives in `tasks/` as a plain function with a `@task`
wrapper. Stages hand each other small typed artifacts (paths plus fingerprints), so Prefect
never hashes or pickles a model or an array, and every stage can be re-run alone.

Orchestration, decided here:
  * TensorFlow stages run on the flow's main thread (tasks are called, not submitted): TF is
    not fork-safe and a Keras model must not be shared across threads. Served or deployed,
    each flow run is its own `python -m prefect.engine` process. The dropout sweep is a
    subflow (flows/sweep.py) with its own runner: spawned processes when it uses workers.
  * Task-run names say what ran on what: `ingest-<source>`, `extract-<manifest[:8]>`,
    `train-<placement>-<rate>-<manifest[:8]>`, `evaluate-<head[:8]>`, `dropout-report-<head[:8]>`,
    `export-<head[:8]>`, `promote-<version>`.
  * Retries: the tfds download is its own task run inside ingest (retried with backoff on
    download errors) and training resumes from its checkpoint once; expected failures
    (`PipelineError`) are never retried. Timeouts: extract and train set theirs beside the
    stage; the others get the generous `STAGE_TIMEOUTS_S` below, so a hung stage fails.
  * A failing stage ends the run `Failed` with the one-line state message
    "<stage> failed: <cause>" (CLI stderr, Prefect UI): the `PipelineError`'s message, or
    "<ExceptionType>: <first line>" for anything unexpected (its traceback is in the task
    run's log). The on_failure hook writes failure.json / failure.md into the run folder.
  * A rerun on unchanged data reuses the content-keyed feature cache (0 images computed).
  * After each stage the flow publishes that stage's files as Prefect artifacts
    (`inception_retrain.prefect_artifacts`).

    run_dir, ok, message = run_retrain(RetrainConfig(data="demo", workdir="workdir"))
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.states import Failed
from prefect.utilities.annotations import opaque

from inception_retrain import prefect_artifacts as ui
from inception_retrain.config import DEMO_SOURCE, RetrainConfig
from inception_retrain.errors import PipelineError
from inception_retrain.files import atomic_write_json, new_run_dir
from inception_retrain.logs import hide_expected_tracebacks
from inception_retrain.run_folder import run_dir_for_flow_run, write_failure_summary
from tasks.dropout_report import dropout_report_task
from tasks.evaluate import evaluate_task
from tasks.export import export_task
from tasks.extract import extract_task
from tasks.ingest import ingest_task, require_test_images
from tasks.registry import promote_task
from tasks.train import train_task

hide_expected_tracebacks()  # in every process that runs this flow (CLI, serve subprocesses)

# Upper bounds for stages that set no timeout of their own (seconds): far above a normal run,
# so only a hung stage reaches them.
STAGE_TIMEOUTS_S = {
    "ingest": 6 * 3600,
    "evaluate": 2 * 3600,
    "dropout-report": 6 * 3600,
    "export": 2 * 3600,
    "promote": 1800,
}


def source_label(data: str) -> str:
    """A short name for a data source: 'demo', 'tfds-cats_vs_dogs', or the folder's name."""
    if data == DEMO_SOURCE:
        return DEMO_SOURCE
    if data.startswith("tfds:"):
        return "tfds-" + data[len("tfds:") :].split("?", 1)[0]
    return Path(data).name or "data"


def _run_stage(stage_task, stage: str, run_name: str, *args):
    """Call `stage_task` on this thread as task run `run_name` (with a timeout if it has none).

    Arguments go in as `opaque`: Prefect links each one to the task run that returned it, but
    does not scan inside it. Scanning matched interned strings inside the manifest (e.g.
    "validation") to the sweep subflow's result, and the resulting `flow_run` input made the
    Prefect UI's task-run list of the flow run come up empty.
    """
    timeout = stage_task.timeout_seconds or STAGE_TIMEOUTS_S.get(stage)
    configured = stage_task.with_options(task_run_name=run_name, timeout_seconds=timeout)
    return configured(*(opaque(arg) for arg in args))


def _publish(publish, run_dir: Path) -> None:
    """Publish artifacts from the run folder; a failure is logged, never fails the run."""
    try:
        publish(run_dir)
    except Exception as error:  # e.g. the API briefly unreachable: monitoring is not the job
        get_run_logger().warning("artifacts not published (%s): %s", publish.__name__, error)


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


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

    stage = "ingest"
    evaluated = False
    try:
        manifest = _run_stage(
            ingest_task, stage, f"ingest-{source_label(config.data)}", config, run_dir
        )
        _publish(ui.publish_ingest, run_dir)
        require_test_images(manifest)
        data_id = manifest.fingerprint[:8]

        stage = "extract"
        cache = _run_stage(extract_task, stage, f"extract-{data_id}", manifest, config, run_dir)
        logger.info("features: %d computed, %d reused from cache", cache.computed, cache.reused)

        stage = "train"
        train_name = f"train-{config.dropout_placement}-{config.dropout_rate:g}-{data_id}"
        head = _run_stage(train_task, stage, train_name, manifest, cache, config, run_dir)
        head_id = head.fingerprint[:8]

        stage = "evaluate"
        evaluation = _run_stage(
            evaluate_task, stage, f"evaluate-{head_id}", manifest, cache, head, config, run_dir
        )
        evaluated = True
        _publish(ui.publish_metrics, run_dir)

        stage = "dropout-report"
        _run_stage(
            dropout_report_task, stage, f"dropout-report-{head_id}",
            manifest, cache, head, config, run_dir,
        )  # fmt: skip
        _publish(ui.publish_dropout_impact, run_dir)

        stage = "export"
        version = _run_stage(
            export_task, stage, f"export-{head_id}",
            manifest, cache, head, evaluation, config, run_dir,
        )  # fmt: skip

        stage = "promote"
        version = _run_stage(
            promote_task, stage, f"promote-{version.version}", version, evaluation, config, run_dir
        )
        logger.info(
            "model %s %s", version.version, "promoted to champion" if version.promoted else "kept"
        )
    except Exception as error:  # the task run's log already holds the traceback
        if stage == "ingest":  # ingest writes skipped.csv before it rejects the data
            _publish(ui.publish_ingest, run_dir)
        cause = _one_line(error)
        if not isinstance(error, PipelineError):  # unexpected (a bug, a timeout): name it
            cause = f"{type(error).__name__}: {cause}"
        message = f"{stage} failed: {cause}"
        logger.error(message)
        return Failed(message=message)
    finally:
        # Published last so the report includes the promotion decision (promote appends it).
        if evaluated:
            _publish(ui.publish_evaluation_report, run_dir)
            _publish(ui.publish_report_links, run_dir)
    return str(run_dir)


def run_retrain(config: RetrainConfig) -> tuple[Path | None, bool, str]:
    """Run the flow once in-process; returns (run folder, succeeded, one-line message)."""
    state = retrain(config, return_state=True)
    if state.is_completed():
        return Path(state.result()), True, "completed"
    run_dir = run_dir_for_flow_run(config.workdir, state.state_details.flow_run_id)
    return run_dir, False, state.message or "the run failed"
