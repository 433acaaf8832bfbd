"""The `inception-retrain` command line: the top layer, over the flows and the core library.

`run` takes one option per `RetrainConfig` field, nested models flattened (cli/options.py:
`--dropout-rate` is `config.head.dropout_rate`, `--augment-views` is `config.augment.views`).
Bad input exits with code 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import os
import sys
import typing
from pathlib import Path

import typer

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException, NoArgsIsHelpError

from inception_retrain.cli.options import (
    OPTION_FIELDS,
    UsageError,
    config_from_options,
    config_option,
    given_options,
    split_list,
    with_config_options,
)
from inception_retrain.cli.workdir_commands import cache_app, models_app, runs_app
from inception_retrain.config import NIGHTLY_CRON, NIGHTLY_TIMEZONE, RetrainConfig
from inception_retrain.plumbing import stderr_filter
from inception_retrain.plumbing.errors import BusyError, PipelineError

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    no_args_is_help=True,
    help="Retrain a Dense/Dropout head on a frozen InceptionV3 and measure what Dropout does.",
)
app.add_typer(cache_app, name="cache")
app.add_typer(runs_app, name="runs")
app.add_typer(models_app, name="models")
BUSY_EXIT_CODE = 75  # EX_TEMPFAIL: another run holds the workdir; try again later


def _print_version(value: bool) -> None:
    if value:
        from inception_retrain import __version__

        typer.echo(f"inception-retrain {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        metavar="",
        is_eager=True,
        callback=_print_version,
        help="Print the version and exit.",
    ),
) -> None:
    """Retrain a Dense/Dropout head on a frozen InceptionV3 and measure what Dropout does."""


def fail(message: str, code: int = 2) -> typing.NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def quiet_tensorflow() -> None:
    """Quiet defaults a user can still override: TF's C++ logs, Prefect's telemetry."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


NO_WAIT = inspect.Parameter(
    "no_wait",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option(
        False,
        "--no-wait",
        metavar="",
        help="Refuse (exit code 75) instead of waiting for a run in progress.",
    ),
    annotation=bool,
)


@app.command("run")
@functools.partial(with_config_options, extra=(NO_WAIT,))
def run_command(ctx: typer.Context, no_wait: bool = False, **options) -> None:
    """Run the retrain flow once (embedded Prefect, no server needed); prints the run folder.

    Inputs are checked first (nothing is written if they cannot work). One run per workdir:
    a second one waits for the first, or refuses with --no-wait.
    """
    quiet_tensorflow()
    from inception_retrain.runs import preflight, workdir

    try:
        config = config_from_options(given_options(ctx, options))
        # before Prefect or TensorFlow is imported
        preflight.check_run_inputs(
            config.ingest, config.backbone, config.cache_root, config.cluster
        )
    except (UsageError, PipelineError) as error:
        fail(str(error))
    wait_note = functools.partial(typer.echo, err=True)
    try:
        with workdir.run_lock(config.workdir, wait=not no_wait, on_wait=wait_note):
            _run_locked(config)
    except BusyError as error:
        fail(str(error), code=BUSY_EXIT_CODE)


def _run_locked(config: RetrainConfig) -> None:
    stderr_filter.install()
    from inception_retrain.flows.retrain import run_retrain

    # Prefect stops its temporary server at exit (atexit) and logs that. An atexit handler
    # registered before the server starts runs after that stop (LIFO), so the run folder
    # stays the last line of the output.
    last_line: list[str] = []
    atexit.register(lambda: last_line and print(last_line[0], flush=True))
    run_dir, ok, message = run_retrain(config)
    if run_dir is not None:
        last_line.append(str(run_dir))
    if not ok:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1)


@app.command("demo-data")
def demo_data_command(
    directory: Path = typer.Argument(
        ..., metavar="FOLDER", help="Folder to write the demo classes into."
    ),
    per_class: int = typer.Option(
        200, min=10, metavar="INTEGER RANGE", help="Good images per class."
    ),
    seed: int = typer.Option(
        0, metavar="INTEGER", help="Random seed (the output is deterministic)."
    ),
) -> None:
    """Write a deterministic two-class folder of JPEG/PNG images, plus a few broken files."""
    from inception_retrain.data.demo_data import write_demo_data

    summary = write_demo_data(directory, per_class=per_class, seed=seed)
    good, broken = summary["good"], summary["broken"]
    typer.echo(f"wrote {good} images and {broken} broken files to {directory}")


@app.command("predict")
def predict_command(
    paths: list[str] = typer.Argument(
        ..., metavar="PATH...", help="Image files or folders (searched recursively)."
    ),
    model: str = typer.Option(
        "champion", metavar="VERSION", help="'champion' or a version name under models/."
    ),
    workdir: Path = typer.Option(Path("workdir"), metavar="PATH", help="Holds models/."),
    output: Path = typer.Option(
        Path("predictions.csv"), metavar="PATH", help="Output table: .csv or .parquet."
    ),
    cluster: str | None = typer.Option(
        None,
        metavar="local:N|tcp://HOST:PORT",
        help="Score on a Dask cluster: 'local:N' or 'tcp://HOST:PORT' [default: here].",
    ),
    shard_files: int = typer.Option(
        256, min=1, metavar="INTEGER RANGE", help="Input files per task on a cluster."
    ),
) -> None:
    """Predict images with a registered model; bad files become error rows, not failures.

    PATHS may be folders, files or s3://bucket/prefix URIs."""
    quiet_tensorflow()
    from inception_retrain.plumbing.cluster_spec import parse_cluster
    from inception_retrain.registry.versions import resolve_model

    inputs = [p if "://" in p else Path(p) for p in paths]
    try:  # before Prefect or TensorFlow is imported: a refusal takes well under a second
        spec = parse_cluster(cluster) if cluster else None
        model_dir = resolve_model(workdir, model)
        if all(isinstance(p, Path) and not p.exists() for p in inputs):
            # a missing file among others is an error row of the output; only nothing is fatal
            raise UsageError(f"no image files found in {', '.join(map(str, paths))}")
    except (UsageError, PipelineError) as error:
        fail(str(error))
    stderr_filter.install()
    from inception_retrain.registry.predict import predict_files

    try:
        if spec is not None:
            from inception_retrain.flows.predict import batch_predict

            state = batch_predict(
                [str(p) for p in inputs],
                str(output),
                model,
                str(workdir),
                spec,
                shard_files,
                return_state=True,
            )
            if not state.is_completed():
                fail(state.message or "batch prediction failed", code=1)
            summary = state.result()
        else:
            summary = predict_files(model_dir, inputs, output)
    except PipelineError as error:
        fail(str(error))
    typer.echo(f"wrote {summary['n_files']} predictions ({summary['n_failed']} failed) to {output}")


CRON = inspect.Parameter(
    "cron",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option(
        NIGHTLY_CRON,
        "--cron",
        metavar="CRON",
        help="nightly-retrain's schedule, as a cron expression.",
        rich_help_panel="Schedule",
    ),
    annotation=str,
)
TIMEZONE = inspect.Parameter(
    "timezone",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option(
        NIGHTLY_TIMEZONE,
        "--timezone",
        metavar="TZ",
        help="The schedule's time zone (IANA name).",
        rich_help_panel="Schedule",
    ),
    annotation=str,
)


@app.command("serve")
@functools.partial(with_config_options, extra=(CRON, TIMEZONE))
def serve_command(
    ctx: typer.Context, cron: str = NIGHTLY_CRON, timezone: str = NIGHTLY_TIMEZONE, **options
) -> None:
    """Serve the deployments (nightly-retrain on its cron, dropout-sweep, batch-predict) here.

    No work pool or worker: runs start here as their own processes. Options override
    nightly-retrain's default parameters and schedule (flows/deployments.py).
    """
    quiet_tensorflow()
    overrides = given_options(ctx, options)
    try:
        config = config_from_options(overrides)
        check_schedule(cron, timezone)
    except UsageError as error:
        fail(str(error))
    stderr_filter.install()  # the served flow runs' processes inherit it
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():  # from the environment or the active Prefect profile
        typer.echo(
            "note: PREFECT_API_URL is not set: serving against a temporary local server that "
            "ends with this process; start `prefect server start` and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api to use the UI",
            err=True,
        )
    from inception_retrain.flows.deployments import serve_deployments

    serve_deployments(deployment_overrides(config, overrides), cron, timezone)


@app.command("prefect-yaml")
def prefect_yaml_command(
    cron: str = typer.Option(
        NIGHTLY_CRON, "--cron", metavar="CRON", help="nightly-retrain's schedule."
    ),
    timezone: str = typer.Option(
        NIGHTLY_TIMEZONE, "--timezone", metavar="TZ", help="The schedule's time zone."
    ),
) -> None:
    """Print prefect.yaml for `prefect deploy`: the deployments `serve` serves."""
    try:
        check_schedule(cron, timezone)
    except UsageError as error:
        fail(str(error))
    from inception_retrain.flows.deployments import prefect_yaml

    typer.echo(prefect_yaml(cron, timezone), nl=False)


def check_schedule(cron: str, timezone: str) -> None:
    """A one-line UsageError for a cron expression or time zone Prefect would refuse, by the
    rules of Prefect's CronSchedule (croniter, no random or hashed fields, an IANA zone), checked
    without importing Prefect."""
    import zoneinfo

    from croniter import croniter

    if not croniter.is_valid(cron):
        raise UsageError(f'--cron: Invalid cron string: "{cron}"')
    if any(field.casefold() in ("r", "h") for field in cron.split()):
        raise UsageError(f'--cron: random and hashed expressions are unsupported: "{cron}"')
    if timezone not in zoneinfo.available_timezones():
        raise UsageError(
            f'--timezone: Invalid timezone: "{timezone}" (an IANA name, e.g. Europe/Paris)'
        )


def deployment_overrides(config: RetrainConfig, options: typing.Iterable[str]) -> dict:
    """The config fields that the given options set, as deployment parameters; a nested
    option carries its whole model (its other fields at their defaults)."""
    keys = {OPTION_FIELDS[name][1] or name for name in options}
    return config.model_dump(mode="json", include=keys)


# The sweep settings `dropout-report` can override: every RetrainConfig field named sweep_*.
SWEEP_FIELDS = [name for name in RetrainConfig.model_fields if name.startswith("sweep_")]


def _sweep_options(command):
    """Give `command` --run, --sweep-workers and one option per sweep field of the config."""
    params = [
        inspect.Parameter(
            "run",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                ...,
                "--run",
                metavar="RUN_FOLDER",
                help="A finished run folder (WORKDIR/runs/<id>/).",
            ),
            annotation=Path,
        ),
        inspect.Parameter(
            "sweep_workers",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                1,
                "--sweep-workers",
                min=1,
                metavar="INTEGER RANGE",
                help="Processes for the sweep (1: one after another).",
            ),
            annotation=int,
        ),
    ] + [config_option(name, default_text="the run's") for name in SWEEP_FIELDS]
    command.__signature__ = inspect.Signature(params)
    return command


@app.command("dropout-report")
@_sweep_options
def dropout_report_command(run: Path, sweep_workers: int = 1, **options) -> None:
    """Rebuild dropout_impact.{json,md,html} of an existing run; prints the JSON's path."""
    quiet_tensorflow()
    from inception_retrain.runs.run_folder import check_finished

    try:  # before Prefect or TensorFlow is imported: a refusal takes well under a second
        check_finished(run)
    except PipelineError as error:
        fail(str(error))
    stderr_filter.install()
    from inception_retrain.flows.dropout_report import rebuild_dropout_report

    overrides = {}
    for name, raw in options.items():
        if raw is None:
            continue
        kind = typing.get_origin(RetrainConfig.model_fields[name].annotation)
        overrides[name] = split_list(str(raw)) if kind in (list, tuple) else raw
    state = rebuild_dropout_report(run, overrides, sweep_workers, return_state=True)
    if not state.is_completed():
        fail(state.message or "the dropout report failed", code=1)
    typer.echo(state.result())


def main() -> None:
    """Console entry point: usage errors become one line on stderr with exit code 2."""
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as error:
        typer.echo(error.format_message(), err=True)
        sys.exit(2)
    except ClickException as error:
        typer.echo(f"error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except UsageError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
