"""Reports for people, rendered from jinja2 templates: Markdown and self-contained HTML.

Every report of the project (evaluation, dropout impact, model card) is a template under
`templates/`, filled from the JSON document its stage wrote and, where it has one, the
promotion decision, so what a person reads is what the JSON holds. The HTML templates extend
`_base.html.j2` (one style, a `<h1>`, the random-weights banner) and embed every image as a
data URI: one file that opens offline in any browser, with no external URL. The Markdown
templates link the PNG files beside them. Shared pieces are macros in `_macros.*.j2`.

Filters every template can use:
  * `num`: how a number is shown everywhere (floats with 4 decimals, None as "n/a");
  * `sig(digits)`: a float with that many significant digits;
  * `pct`: a fraction as a percentage;
  * `data_uri`: a PNG file (path) as `data:image/png;base64,...`;
  * `md_cell`: text safe inside a Markdown table cell.

    >>> html = render("evaluation.html.j2", doc=document, promotion=record, run_dir=run_dir)
"""

from __future__ import annotations

import base64
import functools
import os

import jinja2


def num(value) -> str:
    """A table cell's number: floats with 4 decimals, None as "n/a"."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def sig(value, digits: int = 3) -> str:
    """A float with `digits` significant digits, None as "n/a"."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def pct(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}g}%"


def data_uri(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as handle:
        return "data:image/png;base64," + base64.b64encode(handle.read()).decode("ascii")


def md_cell(value) -> str:
    return num(value).replace("|", "\\|").replace("\n", " ")


def cells(row, columns) -> list:
    """A table row's values in column order: from a dict by column, or a sequence as is."""
    if isinstance(row, dict):
        return [row.get(column) for column in columns]
    return list(row)


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("inception_retrain.evaluation.reports", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(num=num, sig=sig, pct=pct, data_uri=data_uri, md_cell=md_cell)
    env.globals["cells"] = cells
    return env


def render(template: str, **context) -> str:
    """The named template rendered with `context`."""
    return environment().get_template(template).render(**context)
