"""The config as command-line options: one typed `--field-name` per RetrainConfig field.

Options are generated from the config model, so the CLI and the deployment parameters cannot
drift apart: every field of `RetrainConfig` is an option, and so is every field of its nested
models: `HeadSpec`'s under their own names (`--dropout-rate` goes to `config.head.dropout_rate`),
any other's prefixed with the field's name (`--augment-views` goes to `config.augment.views`).

Each option shows what the field is (`option_type`): an integer or a float with the field's
limits (`--image-size INTEGER RANGE [75<=x<=1024]`), one of a `Literal`'s choices, a switch
`--x/--no-x` for a bool, a comma-separated list, or text. Its default is the field's own, or a
description of it where the field's default is computed at run time (`--feature-cache`:
WORKDIR/cache). Options sit in help panels by subject (`PANELS`). Click checks types, ranges
and choices; pydantic then validates the whole config, and a bad value is a `UsageError` of
one line. Only the options given on the command line reach the config (`given_options`), so a
served deployment's parameters hold what the user set, and nothing else.

    >>> config = config_from_options({"dropout_rate": 0.5, "hidden_units": "256,512"})
    >>> config.head.hidden_units
    (256, 512)
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import annotated_types
import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

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

# Help panels, in the order `--help` shows them: (panel, option names or name prefixes).
# An option no entry claims lands in OTHER_PANEL (tests/test_cli.py keeps that one empty).
PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Data", ("data", "workdir", "split_fractions", "max_pixels", "min_image_size")),
    (
        "Backbone and feature cache",
        ("weights", "image_size", "layer", "extract_batch_size", "feature_dtype", "feature_cache"),
    ),
    (
        "Head and training",
        (
            "hidden_units",
            "dropout_rate",
            "dropout_placement",
            "learning_rate",
            "epochs",
            "batch_size",
            "patience",
            "seed",
            "device",
            "mixed_precision",
            "memory_budget_mb",
            "standardize_features",
        ),
    ),
    ("Augmented views", ("augment",)),
    ("Fine-tuning", ("fine_tune",)),
    ("Promotion", ("promotion_", "publish_models")),
    ("Data checks", ("data_checks", "contract_", "slice")),
    ("Dropout report and sweep", ("sweep_", "equivalence_margin", "mc_passes")),
    ("Cluster", ("cluster", "shard_")),
)
OTHER_PANEL = "Other"
# Defaults computed when a run starts: what `--help` says instead of "None".
DEFAULT_TEXT = {"feature_cache": "WORKDIR/cache", "cluster": "this process", "fine_tune": "off"}
# What a text option takes, where "TEXT" would say too little.
METAVARS = {
    "data": "demo|FOLDER|s3://BUCKET/PREFIX|tfds:NAME",
    "weights": "imagenet|FILE|random[:SEED]",
    "layer": "LAYER",
    "feature_cache": "FOLDER|s3://BUCKET/PREFIX",
    "cluster": "local:N|tcp://HOST:PORT",
    "slices_csv": "FILE",
    "fine_tune": "BLOCK",
}


def option_name(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def panel_of(name: str) -> str:
    """The panel whose claim matches `name` longest ("data_checks_alpha": "Data checks",
    not "Data")."""
    matches = [
        (len(claim), -index, panel)
        for index, (panel, claims) in enumerate(PANELS)
        for claim in claims
        if name == claim or name.startswith(claim)
    ]
    return max(matches)[2] if matches else OTHER_PANEL


def _field(name: str) -> FieldInfo:
    model, _, key = OPTION_FIELDS[name]
    return model.model_fields[key]


def _range(field: FieldInfo) -> str:
    """The field's limits as click writes a range: "[75<=x<=1024]", "[0<=x<1]", "[x>=1]";
    "" without limits. Pydantic checks them (click's ranges have no open ends)."""
    low = high = None  # (operator as "x <op> value" reads, value)
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            low = (">=", item.ge)
        elif isinstance(item, annotated_types.Gt):
            low = (">", item.gt)
        elif isinstance(item, annotated_types.Le):
            high = ("<=", item.le)
        elif isinstance(item, annotated_types.Lt):
            high = ("<", item.lt)
    if low and high:
        mirrored = "<=" if low[0] == ">=" else "<"
        return f"[{low[1]:g}{mirrored}x{high[0]}{high[1]:g}]"
    if low or high:
        operator, value = low or high
        return f"[x{operator}{value:g}]"
    return ""


def _element_name(annotation) -> str:
    args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
    names = {int: "INT", float: "FLOAT"}
    element = typing.get_args(args[0])[0] if typing.get_origin(args[0]) else args[0]
    if typing.get_origin(element) is typing.Literal:
        return "|".join(typing.get_args(element))
    return names.get(element, "TEXT")


def option_type(name: str) -> tuple[type, dict]:
    """(Python annotation, extra typer.Option arguments) that type option `name` as its field."""
    field = _field(name)
    annotation = field.annotation
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return bool, {"metavar": ""}  # a switch takes no value: no "<bool>" column
    if annotation in (int, float):
        kind = "INTEGER" if annotation is int else "FLOAT"
        limits = _range(field)
        return annotation, {"metavar": f"{kind} RANGE {limits}" if limits else kind}
    if origin is typing.Literal:
        return annotation, {}  # typer shows the choices and refuses others
    if origin in (tuple, list):
        element = _element_name(annotation)
        count = len(typing.get_args(annotation)) if origin is tuple else 0
        metavar = ",".join([element] * count) if count else f"{element},..."
        return str, {"metavar": metavar}
    if annotation is Path:
        return Path, {"metavar": "PATH"}
    return str, {"metavar": METAVARS.get(name, "TEXT")}


def _default(name: str):
    field = _field(name)
    default = field.get_default(call_default_factory=True)
    if isinstance(default, list | tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
    if isinstance(default, Path):
        return str(default)
    return default


def field_help(name: str) -> str:
    """The field's description, escaped for the help's markup, with "comma-separated" for
    lists."""
    field = _field(name)
    text = field.description or ""
    if typing.get_origin(field.annotation) in (tuple, list):
        text += " Comma-separated."
    return text.replace("[", "\\[")


def config_option(name: str, default_text: str | None = None) -> inspect.Parameter:
    """The typed, grouped `--field-name` option of config field `name`; with `default_text`
    its default is None (not given), shown as that text (e.g. "the run's")."""
    annotation, extra = option_type(name)
    flag = option_name(name)
    declarations = [f"{flag}/--no-{flag[2:]}"] if annotation is bool else [flag]
    default = None if default_text else _default(name)
    shown = default_text or DEFAULT_TEXT.get(name, True)
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(
            default,
            *declarations,
            help=field_help(name),
            rich_help_panel=panel_of(name),
            show_default=shown,
            **extra,
        ),
        annotation=annotation if default is not None else annotation | None,
    )


def given_options(ctx: typer.Context, options: dict) -> dict:
    """The options of `options` that the command line set (not their defaults). By name:
    typer vendors its own click, whose ParameterSource is not `click`'s."""
    given = {}
    for name, value in options.items():
        source = ctx.get_parameter_source(name)
        if source is not None and source.name == "COMMANDLINE":
            given[name] = value
    return given


def config_from_options(options: dict[str, object]) -> RetrainConfig:
    """Build the config from option values (strings for lists); pydantic validates it."""
    values: dict[str, object] = {}
    for name, raw in options.items():
        if raw is None:
            continue
        model, group, key = OPTION_FIELDS[name]
        annotation = model.model_fields[key].annotation
        origin = typing.get_origin(annotation)
        value = raw
        if origin in (tuple, list):
            value = split_list(str(raw))
            if origin is tuple and len(value) != len(typing.get_args(annotation)):
                count = len(typing.get_args(annotation))
                raise UsageError(
                    f"{option_name(name)}: expected {count} comma-separated values, got {raw!r}"
                )
        if group:
            values.setdefault(group, {})[key] = value
        else:
            values[name] = value
    try:
        return RetrainConfig.model_validate(values)
    except ValidationError as error:
        raise UsageError(validation_message(error)) from None


CONTEXT = inspect.Parameter(
    "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
)


def with_config_options(command, extra: tuple[inspect.Parameter, ...] = ()):
    """Give `command` the click context, one typed `--field-name` option per RetrainConfig
    field, and `extra`."""
    order = [panel for panel, _ in PANELS] + [OTHER_PANEL]
    names = sorted(OPTION_FIELDS, key=lambda name: order.index(panel_of(name)))  # stable
    params = [CONTEXT, *(config_option(name) for name in names), *extra]
    command.__signature__ = inspect.Signature(params)
    return command
