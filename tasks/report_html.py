"""Self-contained HTML (and Markdown) reports: one file, images embedded, no external URLs.

Every report of the project (evaluation, dropout impact, promotion) is built from the same
few pieces, so they look alike and open offline in any browser:

  * `render_html(title, sections)` -> a complete HTML document; `title` becomes the `<h1>`,
    each `(heading, body_html)` section an `<h2>` with its body (HTML you built with the
    helpers below; plain text must go through `html.escape`).
  * `png_data_uri(path_or_figure)` -> `data:image/png;base64,...` of a PNG file or a
    matplotlib figure; `image_html(...)` wraps it in an `<img>` tag.
  * `table_html(rows, columns)` / `table_markdown(rows, columns)` -> a table of dicts keyed by
    column, or of sequences in column order; floats show 4 decimals, None shows "n/a".
  * `append_section(document, heading, body_html)` -> the document with that section at the
    end, replacing one of the same heading (e.g. the promotion decision, added to the
    evaluation report after the fact).

    rows = [{"metric": "accuracy", "value": 0.91}]
    sections = [("Metrics", table_html(rows, ["metric", "value"])),
                ("ROC curve", image_html("roc.png", "ROC curve"))]
    Path("report.html").write_text(render_html("Evaluation report", sections))
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping, Sequence

_END_MARKER = "<!-- end of sections -->"

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #bbb; padding: .25rem .6rem; text-align: left; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
.note { color: #7a4a00; }
code { background: #f3f3f3; padding: 0 .2rem; }
"""


def format_value(value) -> str:
    """How a table cell shows a value: 4 decimals for floats, "n/a" for None."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _cells(row, columns: Sequence[str]) -> list:
    if isinstance(row, Mapping):
        return [row.get(column) for column in columns]
    return list(row)


def table_html(rows: Sequence, columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for value in _cells(row, columns):
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            css = ' class="num"' if numeric else ""
            cells.append(f"<td{css}>{html.escape(format_value(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def table_markdown(rows: Sequence, columns: Sequence[str]) -> str:
    def cell(value) -> str:
        return format_value(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, columns)) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(map(cell, _cells(row, columns))) + " |" for row in rows]
    return "\n".join(lines)


def png_data_uri(path_or_figure) -> str:
    """A PNG file (path) or a matplotlib figure as a base64 data URI."""
    if isinstance(path_or_figure, str | os.PathLike):
        with open(path_or_figure, "rb") as handle:
            data = handle.read()
    else:
        buffer = io.BytesIO()
        path_or_figure.savefig(buffer, format="png", bbox_inches="tight")
        data = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def image_html(path_or_figure, alt: str, width: int | None = None) -> str:
    size = f' width="{int(width)}"' if width else ""
    return f'<img src="{png_data_uri(path_or_figure)}" alt="{html.escape(alt)}"{size}>'


def render_html(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """A complete, self-contained HTML document: `<h1>title</h1>` then one `<h2>` per section."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    parts += [_section(heading, body) for heading, body in sections]
    parts += [_END_MARKER, "</body></html>", ""]
    return "\n".join(parts)


def append_section(document: str, heading: str, body_html: str) -> str:
    """`document` (from render_html) with the section `heading` last; an existing section with
    that heading is removed first, so re-running a stage does not duplicate it."""
    if _END_MARKER not in document:
        raise ValueError("not a document produced by render_html")
    start = f"<section><h2>{html.escape(heading)}</h2>"
    if start in document:
        before, _, rest = document.partition(start)
        document = before + rest.partition("</section>\n")[2]
    return document.replace(_END_MARKER, _section(heading, body_html) + "\n" + _END_MARKER, 1)


def _section(heading: str, body_html: str) -> str:
    return f"<section><h2>{html.escape(heading)}</h2>\n{body_html}\n</section>"
