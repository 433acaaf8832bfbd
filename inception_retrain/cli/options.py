"""The config as command-line options: one `--field-name` per RetrainConfig field.

Options are generated from the config model, so the CLI and the deployment parameters cannot
drift apart: every field of `RetrainConfig` is an option, and so is every field of its nested
models: `HeadSpec`'s under their own names (`--dropout-rate` goes to `config.head.dropout_rate`),
any other's prefixed with the field's name (`--augment-views` goes to `config.augment.views`).
Values arrive as strings; pydantic converts and validates them, and a bad one is a `UsageError`
of one line.

    >>> config = config_from_options({"dropout_rate": "0.5", "hidden_units": "256,512"})
    >>> config.head.hidden_units
    (256, 512)
"""

from __future__ import annotations

import inspect
import typing

import typer
from pydantic import BaseModel, ValidationError

from inception_retrain.config import RetrainConfig


class UsageError(Exception):
    """A user mistake: reported as one line with exit code 2."""


def validation_message(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = tuple(str(part) for part in first["loc"])
    names = [name for name, (_, group, key) in OPTION_FIELDS.items() if loc[:2] == (group, key)]
    names = names or [part for part in loc if OPTION_FIELDS.get(part, (0, 0, 0))[1] is None]
    where = names[-1] if names else "config"
    message = first["msg"].removeprefix("Value error, ")
    given = first.get("input")
    if isinstance(given, str | int | float) and not isinstance(given, bool):
        message += f", got {given!r}"
    return f"{option_name(where)}: {message}"


def split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


# Every option of `run` and `serve`: RetrainConfig's fields, with those of each nested model
# in place of its field (option name -> (model, the config key it goes under or None, the
# model's field)). Nested fields are named with the prefix of NESTED_PREFIXES, by default the
# config key and "_"; the head's have none (--dropout-rate, as they always were).
NESTED_PREFIXES = {"head": ""}
OPTION_FIELDS: dict[str, tuple[type, str | None, str]] = {}
for _name, _info in RetrainConfig.model_fields.items():
    _model = _info.annotation
    if isinstance(_model, type) and issubclass(_model, BaseModel):
        _prefix = NESTED_PREFIXES.get(_name, f"{_name}_")
        _options = {_prefix + key: (_model, _name, key) for key in _model.model_fields}
    else:
        _options = {_name: (RetrainConfig, None, _name)}
    if set(_options) & set(OPTION_FIELDS):
        raise RuntimeError(f"options {set(_options) & set(OPTION_FIELDS)} are defined twice")
    OPTION_FIELDS.update(_options)


def option_name(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def config_from_options(options: dict[str, str | None]) -> RetrainConfig:
    """Build the config from CLI strings; pydantic does the conversion and validation."""
    values: dict[str, object] = {}
    for name, raw in options.items():
        if raw is None:
            continue
        model, group, key = OPTION_FIELDS[name]
        annotation = model.model_fields[key].annotation
        origin = typing.get_origin(annotation)
        items = split_list(raw)
        if origin is tuple and len(items) != len(typing.get_args(annotation)):
            count = len(typing.get_args(annotation))
            raise UsageError(
                f"{option_name(name)}: expected {count} comma-separated values, got {raw!r}"
            )
        value = items if origin in (tuple, list) else raw
        if group:
            values.setdefault(group, {})[key] = value
        else:
            values[name] = value
    try:
        return RetrainConfig.model_validate(values)
    except ValidationError as error:
        raise UsageError(validation_message(error)) from None


def field_help(name: str) -> str:
    model, _, key = OPTION_FIELDS[name]
    field = model.model_fields[key]
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
