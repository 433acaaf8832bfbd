"""The config as command-line options: one `--field-name` per RetrainConfig field.

Options are generated from the config model, so the CLI and the deployment parameters cannot
drift apart: every field of `RetrainConfig` is an option, and so is every field of its nested
`HeadSpec` (`--dropout-rate` goes to `config.head.dropout_rate`). Values arrive as strings;
pydantic converts and validates them, and a bad one is a `UsageError` of one line.

    >>> config = config_from_options({"dropout_rate": "0.5", "hidden_units": "256,512"})
    >>> config.head.hidden_units
    (256, 512)
"""

from __future__ import annotations

import inspect
import typing

import typer
from pydantic import ValidationError

from inception_retrain.config import RetrainConfig
from inception_retrain.head_spec import HeadSpec


class UsageError(Exception):
    """A user mistake: reported as one line with exit code 2."""


def validation_message(error: ValidationError) -> str:
    first = error.errors()[0]
    names = [str(part) for part in first["loc"] if str(part) in OPTION_FIELDS]
    where = names[-1] if names else "config"
    message = first["msg"].removeprefix("Value error, ")
    given = first.get("input")
    if isinstance(given, str | int | float) and not isinstance(given, bool):
        message += f", got {given!r}"
    return f"{option_name(where)}: {message}"


def split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


# Every option of `run` and `serve`: RetrainConfig's fields, with those of its nested
# HeadSpec in place of `head` (name -> (model, the config key it goes under or None)).
OPTION_FIELDS: dict[str, tuple[type, str | None]] = {}
for _name in RetrainConfig.model_fields:
    if _name == "head":
        OPTION_FIELDS.update({n: (HeadSpec, "head") for n in HeadSpec.model_fields})
    else:
        OPTION_FIELDS[_name] = (RetrainConfig, None)


def option_name(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def config_from_options(options: dict[str, str | None]) -> RetrainConfig:
    """Build the config from CLI strings; pydantic does the conversion and validation."""
    values: dict[str, object] = {}
    for name, raw in options.items():
        if raw is None:
            continue
        model, group = OPTION_FIELDS[name]
        annotation = model.model_fields[name].annotation
        origin = typing.get_origin(annotation)
        items = split_list(raw)
        if origin is tuple and len(items) != len(typing.get_args(annotation)):
            count = len(typing.get_args(annotation))
            raise UsageError(
                f"{option_name(name)}: expected {count} comma-separated values, got {raw!r}"
            )
        value = items if origin in (tuple, list) else raw
        if group:
            values.setdefault(group, {})[name] = value
        else:
            values[name] = value
    try:
        return RetrainConfig.model_validate(values)
    except ValidationError as error:
        raise UsageError(validation_message(error)) from None


def field_help(name: str) -> str:
    model, _ = OPTION_FIELDS[name]
    field = model.model_fields[name]
    default = field.default
    if isinstance(default, list | tuple):
        default = ",".join(map(str, default))
    kind = typing.get_origin(field.annotation)
    shown = "comma-separated; " if kind in (tuple, list) else ""
    if kind is typing.Literal:
        shown = "|".join(typing.get_args(field.annotation)) + "; "
    return f"{field.description or ''} [{shown}default: {default}]".strip()


def with_config_options(command, extra: tuple[inspect.Parameter, ...] = ()):
    """Give `command` one `--field-name` string option per RetrainConfig field (and `extra`)."""
    params = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, option_name(name), help=field_help(name)),
            annotation=str | None,
        )
        for name in OPTION_FIELDS
    ]
    command.__signature__ = inspect.Signature([*params, *extra])
    return command
