"""The `inception-retrain` command line.

`run` takes one option per `RetrainConfig` field (generated from the model, so the CLI and
the deployment parameters cannot drift apart). Bad input exits with code 2 and one line on
stderr, never a traceback.
"""

from __future__ import annotations

import inspect
import os
import sys
import typing
from pathlib import Path

import typer
from pydantic import ValidationError

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException, NoArgsIsHelpError

from inception_retrain.config import RetrainConfig

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Retrain a Dense/Dropout head on a frozen InceptionV3 and measure what Dropout does.",
)
cache_app = typer.Typer(no_args_is_help=True, help="List and prune feature caches.")
app.add_typer(cache_app, name="cache")


class UsageError(Exception):
    """A user mistake: reported as one line with exit code 2."""


def fail(message: str, code: int = 2) -> typing.NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def validation_message(error: ValidationError) -> str:
    first = error.errors()[0]
    where = str(first["loc"][0]) if first["loc"] else "config"
    message = first["msg"].removeprefix("Value error, ")
    return f"--{where.replace('_', '-')}: {message}"


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def config_from_options(options: dict[str, str | None]) -> RetrainConfig:
    """Build the config from CLI strings; pydantic does the conversion and validation."""
    values: dict[str, object] = {}
    for name, raw in options.items():
        if raw is None:
            continue
        annotation = RetrainConfig.model_fields[name].annotation
        origin = typing.get_origin(annotation)
        if origin is tuple and len(_split_list(raw)) != len(typing.get_args(annotation)):
            count = len(typing.get_args(annotation))
            raise UsageError(f"--{name.replace('_', '-')}: expected {count} comma-separated values")
        values[name] = _split_list(raw) if origin in (tuple, list) else raw
    try:
        return RetrainConfig.model_validate(values)
    except ValidationError as error:
        raise UsageError(validation_message(error)) from None


def _field_help(name: str) -> str:
    field = RetrainConfig.model_fields[name]
    default = field.default
    if isinstance(default, list | tuple):
        default = ",".join(map(str, default))
    kind = typing.get_origin(field.annotation)
    shown = "comma-separated; " if kind in (tuple, list) else ""
    if kind is typing.Literal:
        shown = "|".join(typing.get_args(field.annotation)) + "; "
    return f"{field.description or ''} [{shown}default: {default}]".strip()


def _config_options(command):
    """Give `command` one `--field-name` string option per RetrainConfig field."""
    params = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, f"--{name.replace('_', '-')}", help=_field_help(name)),
            annotation=str | None,
        )
        for name in RetrainConfig.model_fields
    ]
    command.__signature__ = inspect.Signature(params)
    return command


@app.command("run")
@_config_options
def run_command(**options: str | None) -> None:
    """Run the retrain flow once (embedded Prefect, no server needed); prints the run folder."""
    quiet_tensorflow()
    try:
        config = config_from_options(options)
    except UsageError as error:
        fail(str(error))
    from flows.retrain import run_retrain

    run_dir, ok, message = run_retrain(config)
    if not ok:
        typer.echo(f"error: {message}", err=True)
        typer.echo(str(run_dir))
        raise typer.Exit(1)
    typer.echo(str(run_dir))


@app.command("demo-data")
def demo_data_command(
    directory: Path = typer.Argument(..., help="Folder to write the demo classes into."),
    per_class: int = typer.Option(200, min=10, help="Good images per class."),
    seed: int = typer.Option(0, help="Random seed (the output is deterministic)."),
) -> None:
    """Write a deterministic two-class folder of JPEG/PNG images, plus a few broken files."""
    from tasks.demo_data import write_demo_data

    summary = write_demo_data(directory, per_class=per_class, seed=seed)
    good, broken = summary["good"], summary["broken"]
    typer.echo(f"wrote {good} images and {broken} broken files to {directory}")


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
