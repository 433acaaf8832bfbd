"""The retrain flow: ingest -> [validate data] -> extract [-> extract-prefix] -> [data drift,
data report] -> train -> [augmentation effect] [-> fine-tune -> fine-tuning-effect] ->
evaluate -> slices -> dropout sweep and report -> promotion (export only what is promoted) ->
evaluation report.
The augmentation effect runs only with --augment-views > 0; the evaluation embeds it.
With --fine-tune BLOCK, the prefix below BLOCK is cached too (`extract-prefix`, into the
run's `fine-tune/` folder), the block(s) train with the head on it (`fine-tune`), and
`fine-tuning-effect` chooses the head alone or the fine-tuned model on validation: the chosen
model (with its cache) is the one every later stage scores, slices, reports, promotes and
exports. The data checks run unless --no-data-checks: the contract right after ingest, drift
once the features are cached; a blocking finding stops the run there, before training, with
its one line ("data-checks failed: blocked: ...") and data_report.html in the run folder.

The flow only wires stages (`inception_retrain.tasks`); stages hand each other small typed
artifacts (paths plus fingerprints), so Prefect never hashes or pickles a model or an array,
and every stage can be re-run alone.

Orchestration, decided here:
  * TensorFlow stages run on the flow's main thread (tasks are called, not submitted): TF is
    not fork-safe and a Keras model must not be shared across threads. Served or deployed,
    each flow run is its own `python -m prefect.engine` process. The dropout sweep is a
    subflow (flows/sweep.py) with its own task runner.
  * Task-run names say what ran on what: `ingest-<source>`, `validate-data-<manifest[:8]>`,
    `extract-<manifest[:8]>`, `data-drift-<manifest[:8]>`, `data-report-<manifest[:8]>`,
    `train-<placement>-<rate>-<manifest[:8]>`, `augmentation-effect-<head[:8]>`,
    `extract-prefix-<layer>-<manifest[:8]>`, `fine-tune-<block>-<head[:8]>`,
    `fine-tuning-effect-<fine-tuned[:8]>`, then for the chosen model `evaluate-<model[:8]>`,
    `slices-<model[:8]>`, `dropout-report-<model[:8]>`, `decide-promotion-<model[:8]>`,
    `export-<model[:8]>`, `promote-<model[:8]>`, `report-<model[:8]>`.
  * Retries and timeouts are the stages' own (tasks/); the others get `STAGE_TIMEOUTS_S`, so
    a hung stage fails.
  * Retention: a model version is published (exported) only when it is promoted, unless
    `publish_models` is "all"; a rejected model keeps its head.keras and reports in the run
    folder.
  * A failing stage ends the run `Failed` with the one-line state message
    "<stage> failed: <cause>" (CLI stderr, Prefect UI): the `PipelineError`'s message, or
    "<ExceptionType>: <first line>" for anything unexpected (its traceback is in the task
    run's log). The run folder's status.json says running, completed or failed; the
    on_failure / on_crashed hook writes failure.json and failure.md.
  * Before anything is written, the run's inputs are checked (`inception_retrain.runs.preflight`:
    workdir, data layout and classes, test split, tfds name, weights file); a refusal ends
    the run `Failed` with "preflight failed: <cause>".
  * One run per workdir (`inception_retrain.runs.workdir`): the run holds the workdir's lock for
    its whole life (a second one waits, with a warning saying for which run), marks runs
    whose process died as killed and removes what they left (a staging folder, temporary
    files, checkpoints); its run folder's lock tells others it is alive.
  * A rerun on unchanged data reuses the content-keyed feature cache (0 images computed) and
    the stored sweep results (0 sweep heads trained).

    run_dir, ok, message = run_retrain(RetrainConfig(data="demo", workdir="workdir"))
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.states import Failed
from prefect.utilities.annotations import BaseAnnotation, opaque, quote

from inception_retrain.config import RetrainConfig
from inception_retrain.data.contract import DataValidation
from inception_retrain.data.contract_spec import DataCheckSpec
from inception_retrain.data.demo_data import DEMO_SOURCE
from inception_retrain.data.ingest import require_test_images
from inception_retrain.data.manifest import Manifest
from inception_retrain.evaluation.data_report import DataChecksBlocked
from inception_retrain.evaluation.drift import DriftResult
from inception_retrain.evaluation.fine_tuning_effect import FINE_TUNED
from inception_retrain.flows.cluster import dask_cluster
from inception_retrain.flows.extract import run_extraction
from inception_retrain.flows.sweep import run_sweep
from inception_retrain.plumbing.errors import PipelineError
from inception_retrain.runs import preflight, run_folder, workdir
from inception_retrain.runs.data_reference import find_reference
from inception_retrain.tasks.augmentation_effect import augmentation_effect_task
from inception_retrain.tasks.data_drift import data_drift_task
from inception_retrain.tasks.data_report import data_report_task
from inception_retrain.tasks.dropout_report import dropout_report_task
from inception_retrain.tasks.evaluate import evaluate_task
from inception_retrain.tasks.export import export_task
from inception_retrain.tasks.extract import extract_task
from inception_retrain.tasks.fine_tune import fine_tune_task
from inception_retrain.tasks.fine_tuning_effect import fine_tuning_effect_task
from inception_retrain.tasks.ingest import ingest_task
from inception_retrain.tasks.promote import decide_promotion_task, promote_task
from inception_retrain.tasks.report import report_task
from inception_retrain.tasks.runtime import hide_expected_tracebacks
from inception_retrain.tasks.slices import slices_task
from inception_retrain.tasks.train import train_task
from inception_retrain.tasks.validate_data import validate_data_task
from inception_retrain.training.fine_tune import FINE_TUNE_DIR

hide_expected_tracebacks()  # in every process that runs this flow (CLI, serve subprocesses)

# Upper bounds for stages that set no timeout of their own (seconds): far above a normal run,
# so only a hung stage reaches them.
STAGE_TIMEOUTS_S = {
    "ingest": 6 * 3600,
    "validate-data": 1800,
    "data-drift": 1800,
    "data-report": 1800,
    "slices": 1800,
    "augmentation-effect": 6 * 3600,
    "fine-tuning-effect": 2 * 3600,
    "evaluate": 2 * 3600,
    "dropout-report": 6 * 3600,
    "decide-promotion": 1800,
    "export": 2 * 3600,
    "promote": 1800,
    "report": 1800,
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

    Arguments go in as `opaque` (unless already annotated): Prefect links each one to the task
    run that returned it, but does not scan inside it. Scanning matched interned strings
    inside the manifest (e.g. "validation") to the sweep subflow's result, and a `flow_run`
    input makes the Prefect UI's task-run list of the flow run come up empty; for the same
    reason the sweep subflow's result itself goes in as `quote` (not tracked at all).
    """
    timeout = stage_task.timeout_seconds or STAGE_TIMEOUTS_S.get(stage)
    configured = stage_task.with_options(task_run_name=run_name, timeout_seconds=timeout)
    return configured(*(a if isinstance(a, BaseAnnotation) else opaque(a) for a in args))


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _decide_data_checks(
    manifest: Manifest,
    validation: DataValidation,
    drift: DriftResult | None,
    spec: DataCheckSpec,
    run_dir: Path,
) -> None:
    """The data report, its outcome in status.json, and the end of the run if it blocks."""
    report = _run_stage(
        data_report_task,
        "data-report",
        f"data-report-{manifest.fingerprint[:8]}",
        manifest,
        validation,
        drift,
        spec,
        run_dir,
    )
    run_folder.write_status(run_dir, "running", data_checks=report.summary)
    if report.blocked:
        raise DataChecksBlocked(f"blocked: {report.reason}")


def record_failure(flow, flow_run, state) -> None:
    """on_failure / on_crashed hook: failure.json, failure.md and status.json of the run."""
    config = (flow_run.parameters or {}).get("config") or {}
    if not isinstance(config, dict):
        config = config.model_dump()
    run_dir = run_folder.run_dir_for_flow_run(config.get("workdir") or "workdir", flow_run.id)
    if run_dir is None:
        return
    message = state.message or state.name
    run_folder.write_failure(run_dir, str(flow_run.id), state.name, message)
    run_folder.write_status(run_dir, "failed", message)


@flow(
    name="retrain",
    log_prints=True,
    on_failure=[record_failure],
    on_crashed=[record_failure],
)
def retrain(config: RetrainConfig) -> str:
    """Retrain the head on `config.data` and write every report into a new run folder."""
    logger = get_run_logger()
    try:
        preflight.check_run_inputs(
            config.ingest, config.backbone, config.cache_root, config.cluster
        )
    except PipelineError as error:  # refused before anything is written
        message = f"preflight failed: {error}"
        logger.error(message)
        return Failed(message=message)
    with workdir.run_lock(config.workdir, on_wait=logger.warning):
        workdir.recover(config.workdir)
        run_dir = run_folder.new_run_dir(config.workdir)
        with run_folder.running(run_dir):
            context = FlowRunContext.get()
            flow_run_id = str(context.flow_run.id) if context and context.flow_run else None
            run_folder.write_config(run_dir, config.model_dump(mode="json"), flow_run_id)
            run_folder.write_status(run_dir, "running")
            logger.info("run folder: %s", run_dir)
            return _run_stages(config, run_dir)


def _run_stages(config: RetrainConfig, run_dir: Path):
    """The stages, in order, into `run_dir`; the run's result or its Failed state."""
    logger = get_run_logger()
    stage = "set-up"
    evaluated = False
    cluster = ExitStack()
    try:
        address = cluster.enter_context(dask_cluster(config.cluster))  # None: this process
        stage = "ingest"
        manifest = _run_stage(
            ingest_task, stage, f"ingest-{source_label(config.data)}", config.ingest, run_dir
        )
        require_test_images(manifest)
        data_id = manifest.fingerprint[:8]

        checks = config.data_check_spec if config.data_checks else None
        validation = None
        if checks is not None:
            stage = "validate-data"
            reference = find_reference(config.workdir, run_dir)
            validation = _run_stage(
                validate_data_task,
                stage,
                f"{stage}-{data_id}",
                manifest,
                reference,
                checks,
                run_dir,
            )
            run_folder.write_status(run_dir, "running", data_checks=validation.summary())
            if validation.blocked:
                stage = "data-checks"
                _decide_data_checks(manifest, validation, None, checks, run_dir)

        stage = "extract"
        cache = _extract(config.extraction, manifest, run_dir, address, config, stage, data_id)
        prefix = None
        if config.fine_tune:
            stage = "extract-prefix"
            prefix = _extract(
                config.prefix_extraction,
                manifest,
                run_dir / FINE_TUNE_DIR,
                address,
                config,
                stage,
                f"{config.prefix_extraction.backbone.layer}-{data_id}",
            )

        if validation is not None:
            stage = "data-drift"
            drift = _run_stage(
                data_drift_task,
                stage,
                f"{stage}-{data_id}",
                manifest,
                cache,
                validation,
                checks,
                run_dir,
            )
            stage = "data-checks"
            _decide_data_checks(manifest, validation, drift, checks, run_dir)

        stage = "train"
        head_name = f"{config.head.dropout_placement}-{config.head.dropout_rate:g}"
        head = _run_stage(
            train_task,
            stage,
            f"train-{head_name}-{data_id}",
            manifest,
            cache,
            config.training,
            run_dir,
        )
        head_id = model_id = head.fingerprint[:8]

        augmentation = None
        if config.augment_views:
            stage = "augmentation-effect"
            augmentation = _run_stage(
                augmentation_effect_task,
                stage,
                f"{stage}-{head_id}",
                manifest,
                cache,
                head.training,
                config.augment_seeds,
            )
        model_cache, model, tuned, fine_tuning = cache, head, None, None
        if prefix is not None:
            stage = "fine-tune"
            tuned = _run_stage(
                fine_tune_task,
                stage,
                f"{stage}-{config.fine_tune}-{head_id}",
                manifest,
                prefix,
                head,
                config.fine_tuning,
                run_dir,
            )
            stage = "fine-tuning-effect"
            fine_tuning = _run_stage(
                fine_tuning_effect_task,
                stage,
                f"{stage}-{tuned.fingerprint[:8]}",
                manifest,
                cache,
                head,
                prefix,
                tuned,
                config.fine_tune_accuracy_margin,
                config.fine_tune_log_loss_margin,
            )
            logger.info("the run's model: %s (%s)", fine_tuning.chosen, fine_tuning.reason)
            if fine_tuning.chosen == FINE_TUNED:
                model_cache, model, model_id = prefix, tuned, tuned.fingerprint[:8]
        stage = "evaluate"
        evaluation = _run_stage(
            evaluate_task,
            stage,
            f"evaluate-{model_id}",
            manifest,
            model_cache,
            model,
            run_dir,
            augmentation,
            fine_tuning,
        )
        evaluated = True
        run_folder.write_status(run_dir, "running", metrics=evaluation.metrics)
        stage = "slices"
        sliced = _run_stage(
            slices_task, stage, f"{stage}-{model_id}", manifest, evaluation, config.slicing, run_dir
        )

        stage = "dropout-report"
        spec = config.sweep(cache.cache_dir, manifest.path, manifest.n_classes, cache.feature_shape)
        sweep = run_sweep(spec, address=address, shard_policy=config.shard_policy)
        _run_stage(
            dropout_report_task,
            stage,
            f"dropout-report-{model_id}",
            manifest,
            model_cache,
            model,
            quote(sweep),
            run_dir,
            config.evidence,
            config.mc_passes,
            tuned,
        )

        stage = "promote"
        decision = _run_stage(
            decide_promotion_task,
            "decide-promotion",
            f"decide-promotion-{model_id}",
            evaluation,
            config.promotion,
            sliced,
        )
        version = None
        if decision.promoted or config.publish_models == "all":
            stage = "export"
            version = _run_stage(
                export_task,
                stage,
                f"export-{model_id}",
                manifest,
                model_cache,
                model,
                evaluation,
                config.promotion,
                run_dir,
            )
        stage = "promote"
        promotion = _run_stage(
            promote_task,
            stage,
            f"promote-{model_id}",
            decision,
            version,
            evaluation,
            config.promotion,
            run_dir,
        )
        logger.info(
            "model %s: %s (%s)",
            promotion["version"] or "not published",
            promotion["decision"],
            promotion["reason"],
        )
        stage = "report"
        _run_stage(report_task, stage, f"report-{model_id}", run_dir, promotion)
    except Exception as error:  # the task run's log already holds the traceback
        cause = _one_line(error)
        if not isinstance(error, PipelineError):  # unexpected (a bug, a timeout): name it
            cause = f"{type(error).__name__}: {cause}"
        message = f"{stage} failed: {cause}"
        logger.error(message)
        if evaluated and stage != "report":  # the evaluation is still worth reading
            _run_stage(report_task, "report", f"report-{model_id}", run_dir, None)
        run_folder.write_status(run_dir, "failed", message)
        return Failed(message=message)
    finally:
        cluster.close()
    outcome = {key: promotion[key] for key in ("decision", "version", "metric", "score")}
    run_folder.write_status(run_dir, "completed", promotion=outcome)
    return str(run_dir)


def _extract(spec, manifest, run_dir: Path, address, config: RetrainConfig, stage, name):
    """One extraction stage (on the cluster at `address`, or here) and its log line."""
    if address:
        shards = config.shard_policy
        cache = run_extraction(manifest, spec, run_dir, address, config.cluster, shards)
    else:
        cache = _run_stage(extract_task, stage, f"{stage}-{name}", manifest, spec, run_dir)
    layer = spec.backbone.layer
    logger = get_run_logger()
    logger.info(
        "%s features: %d computed, %d reused from cache", layer, cache.computed, cache.reused
    )
    if cache.views is not None:
        views = cache.views
        logger.info(
            "%s views: %d computed, %d reused from cache", layer, views.computed, views.reused
        )
    return cache


def run_retrain(config: RetrainConfig) -> tuple[Path | None, bool, str]:
    """Run the flow once in-process; returns (run folder, succeeded, one-line message)."""
    state = retrain(config, return_state=True)
    if state.is_completed():
        return Path(state.result()), True, "completed"
    run_dir = run_folder.run_dir_for_flow_run(config.workdir, state.state_details.flow_run_id)
    return run_dir, False, state.message or "the run failed"
