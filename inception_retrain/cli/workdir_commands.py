"""`inception-retrain runs|models|cache ...`: what a workdir holds, listed, compared, pruned.

    inception-retrain runs ls [--workdir W] [--json]     runs: status, start, data, test score,
                                                         dropout, model, report
    inception-retrain runs show RUN [--json]             one run's settings, metrics, outcome
    inception-retrain runs compare RUN RUN [--json]      two runs side by side
    inception-retrain models ls [--workdir W] [--json]   versions: champion, score, date, run
    inception-retrain models prune --keep N [--dry-run]  keep the champion and the newest N
    inception-retrain cache ls [--workdir W] [--json]    feature caches, their views, sizes, use
    inception-retrain cache prune [--keep-latest N]      caches, old view policies, and the
                                                         sweep results of removed caches
    ... cache ls|prune --feature-cache s3://bucket/p     the same for another cache root, a
                                                         folder or an object-store prefix

RUN is a run folder, a run id or a unique prefix of one. Every time is shown as
"YYYY-MM-DD HH:MM UTC"; `--json` prints the rows as JSON (times in ISO 8601), for scripts.
The core does the work (`runs.run_listing`, `registry.versions`, `features.feature_cache`,
`features.view_cache`, `dropout.sweep_folders`); these commands import it when they run, so
`inception-retrain --help` stays fast.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path

import typer

runs_app = typer.Typer(no_args_is_help=True, help="List, show and compare the runs of a workdir.")
models_app = typer.Typer(no_args_is_help=True, help="List and prune model versions.")
cache_app = typer.Typer(no_args_is_help=True, help="List and prune feature caches.")

WORKDIR = typer.Option(
    Path("workdir"), metavar="PATH", help="The workdir (holds runs/, models/, cache/)."
)
AS_JSON = typer.Option(
    False, "--json", metavar="", help="Print JSON (for scripts) instead of a table."
)


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns; the last one is not padded."""
    lines = [header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=True))
        + "  "
        + line[-1]
        for line in lines
    )


def when(iso: str | None) -> str:
    """An ISO 8601 time as every listing shows it: "2026-12-06 21:41 UTC" ("-" if none)."""
    if not iso:
        return "-"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:  # an offset other than UTC is converted, not relabelled
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def echo_json(value) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _score(row: dict) -> str:
    return "-" if row["score"] is None else f"{row['metric']} {row['score']:.4f}"


def _model(row: dict) -> str:
    if not row["decision"]:
        return "-"
    return f"{row['version'] or 'not published'} ({row['decision']})"


@runs_app.command("ls")
def runs_ls_command(workdir: Path = WORKDIR, as_json: bool = AS_JSON) -> None:
    """List runs, oldest first: status (running, completed, failed, killed), start, images,
    the test score that decides promotion, the head's dropout, the model, the report.

    A run that says running but whose process is gone is marked killed here.
    """
    from inception_retrain.runs.run_listing import list_runs

    runs = list_runs(workdir)
    if as_json:
        echo_json([{k: v for k, v in r.items() if k != "settings"} for r in runs])
        return
    if not runs:
        typer.echo(f"no runs under {workdir / 'runs'}")
        return
    header = ("run", "status", "started", "images", "test score", "dropout", "model", "report")
    rows = [
        (
            r["run"],
            r["state"],
            when(r["started"]),
            "-" if r["images"] is None else str(r["images"]),
            _score(r),
            r["dropout"],
            _model(r),
            r["reports"][0] if r["reports"] else (r["message"] or "-"),
        )
        for r in runs
    ]
    typer.echo(table(header, rows))


def _run(workdir: Path, name: str) -> Path:
    from inception_retrain.plumbing.errors import PipelineError
    from inception_retrain.runs.run_listing import find_run

    try:
        return find_run(workdir, name)
    except PipelineError as error:
        fail(str(error))


def _value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ",".join(_value(v) for v in value)
    return str(value)


@runs_app.command("show")
def runs_show_command(
    run: str = typer.Argument(..., help="A run folder, run id or unique id prefix."),
    workdir: Path = WORKDIR,
    as_json: bool = AS_JSON,
) -> None:
    """Show one run: its outcome, its test metrics, its reports and every setting."""
    from inception_retrain.runs.run_listing import flat_settings, run_summary

    summary = run_summary(_run(workdir, run))
    if as_json:
        echo_json(summary)
        return
    outcome = [
        ("run", summary["run"]),
        ("status", summary["state"] + (f": {summary['message']}" if summary["message"] else "")),
        ("started", when(summary["started"])),
        ("updated", when(summary["updated"])),
        ("data", f"{summary['data']} ({_value(summary['images'])} images)"),
        ("dropout", summary["dropout"]),
        ("test score", _score(summary)),
        ("model", _model(summary)),
        *[("report", path) for path in summary["reports"]],
    ]
    typer.echo(table(("", ""), outcome).split("\n", 1)[1])
    if summary["metrics"]:
        typer.echo("\ntest metrics")
        rows = [(k, _value(v)) for k, v in summary["metrics"].items() if "fingerprint" not in k]
        typer.echo(table(("metric", "value"), rows))
    typer.echo("\nsettings")
    rows = [(k, _value(v)) for k, v in flat_settings(summary["settings"]).items()]
    typer.echo(table(("setting", "value"), rows))


@runs_app.command("compare")
def runs_compare_command(
    first: str = typer.Argument(
        ..., metavar="RUN", help="A run folder, run id or unique id prefix."
    ),
    second: str = typer.Argument(..., help="Another one."),
    workdir: Path = WORKDIR,
    as_json: bool = AS_JSON,
) -> None:
    """Compare two runs side by side: outcome, test metrics, and the settings that differ."""
    from inception_retrain.runs.run_listing import compare_runs

    compared = compare_runs(_run(workdir, first), _run(workdir, second))
    if as_json:
        echo_json(compared)
        return
    a, b = compared["runs"]
    rows = [(key, _value(compared[key][0]), _value(compared[key][1])) for key in OUTCOME]
    rows[1] = ("started", when(compared["started"][0]), when(compared["started"][1]))
    typer.echo(table(("", a, b), rows))
    metrics = [
        (key, _value(x), _value(y))
        for key, (x, y) in compared["metrics"].items()
        if "fingerprint" not in key
    ]
    if metrics:
        typer.echo("\n" + table(("test metric", a, b), metrics))
    settings = [(key, _value(x), _value(y)) for key, (x, y) in compared["settings"].items()]
    typer.echo("\n" + (table(("setting", a, b), settings) if settings else "same settings"))


OUTCOME = ("state", "started", "images", "dropout", "metric", "score", "decision")


@models_app.command("ls")
def models_ls_command(workdir: Path = WORKDIR, as_json: bool = AS_JSON) -> None:
    """List model versions, oldest first: champion, test scores, export time, source run."""
    from inception_retrain.plumbing.errors import PipelineError
    from inception_retrain.registry.versions import list_version_info, models_dir

    try:
        versions = list_version_info(models_dir(workdir))
    except PipelineError as error:
        fail(str(error))
    if as_json:
        echo_json(versions)
        return
    if not versions:
        typer.echo(f"no model versions under {models_dir(workdir)}")
        return
    rows = [
        (
            v["version"],
            "yes" if v["champion"] else "-",
            _value(v["metrics"].get("roc_auc")),
            _value(v["metrics"].get("accuracy")),
            when(v["created"]),
            v["run"] or "-",
            f"{v['bytes'] / 1e6:.1f}",
        )
        for v in versions
    ]
    header = ("version", "champion", "roc_auc", "accuracy", "exported", "run", "MB")
    typer.echo(table(header, rows))


@models_app.command("prune")
def models_prune_command(
    keep: int = typer.Option(
        ..., "--keep", min=0, metavar="INTEGER RANGE", help="Newest versions to keep."
    ),
    workdir: Path = typer.Option(Path("workdir"), metavar="PATH", help="Holds models/."),
    dry_run: bool = typer.Option(
        False, "--dry-run", metavar="", help="Only list what would be removed."
    ),
) -> None:
    """Remove model versions except the champion and the newest --keep."""
    from inception_retrain.plumbing.errors import PipelineError
    from inception_retrain.registry.versions import models_dir, prune_versions

    try:
        removed = prune_versions(models_dir(workdir), keep=keep, dry_run=dry_run)
    except PipelineError as error:
        fail(str(error))
    verb = "would remove" if dry_run else "removed"
    for version in removed:
        typer.echo(f"{verb} {version['version']} ({version['bytes'] / 1e6:.1f} MB)")
    total = sum(v["bytes"] for v in removed) / 1e6
    typer.echo(f"{verb} {len(removed)} version(s), {total:.1f} MB")


FEATURE_CACHE_HELP = (
    "The cache root, if not WORKDIR/cache: a folder or s3://bucket/prefix (as run's "
    "--feature-cache; a remote cache is locked with leases, see docs/reliability.md)."
)


def _cache_root(workdir: Path, feature_cache: str | None):
    """The cache root the command works on; a bad location or an unreachable store is a
    one-line error (exit code 2)."""
    from inception_retrain.plumbing import storage
    from inception_retrain.plumbing.errors import PipelineError

    if not feature_cache:
        return workdir / "cache"
    try:
        return storage.check_reachable(feature_cache, "feature cache")
    except PipelineError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


@contextlib.contextmanager
def _one_line():
    """An expected failure (an object store that cannot be locked, a lost lease) is one
    line and exit code 2."""
    from inception_retrain.plumbing.errors import PipelineError

    try:
        yield
    except PipelineError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


@cache_app.command("ls")
def cache_ls_command(
    workdir: Path = WORKDIR,
    as_json: bool = AS_JSON,
    feature_cache: str | None = typer.Option(
        None, "--feature-cache", metavar="FOLDER|s3://BUCKET/PREFIX", help=FEATURE_CACHE_HELP
    ),
) -> None:
    """List feature caches: fingerprint, images, augmented views, size, dtype, last used,
    layer, weights."""
    from inception_retrain.features.feature_cache import list_caches
    from inception_retrain.features.view_cache import view_totals

    root = _cache_root(workdir, feature_cache)
    with _one_line():
        caches = list_caches(workdir, root)
        for cache in caches:  # views are counted apart from images; MB covers both
            policies, rows, size = view_totals(cache["path"])
            cache.update(views=f"{rows} ({policies} policies)" if policies else "-")
            cache["bytes"] += size
    if as_json:
        echo_json(caches)
        return
    if not caches:
        typer.echo(f"no feature caches under {root}")
        return
    typer.echo(format_cache_table(caches))


def format_cache_table(caches: list[dict]) -> str:
    header = (
        "fingerprint",
        "images",
        "views",
        "MB",
        "dtype",
        "last used",
        "in use",
        "layer",
        "weights",
    )
    rows = [
        (
            c["fingerprint"],
            str(c["images"]),
            c.get("views", "-"),
            f"{c['bytes'] / 1e6:.1f}",
            c["dtype"],
            when(c["last_used"]),
            "yes" if c["in_use"] else "-",
            f"{c['layer']}@{c['image_size']}px",
            c["weights_description"],
        )
        for c in caches
    ]
    return table(header, rows)


@cache_app.command("prune")
def cache_prune_command(
    workdir: Path = typer.Option(Path("workdir"), metavar="PATH", help="Holds cache/."),
    keep_latest: int = typer.Option(
        1,
        min=0,
        metavar="INTEGER RANGE",
        help="Keep this many most recently used caches (and view policies of each).",
    ),
    keep: list[str] = typer.Option(
        [],
        metavar="FINGERPRINT",
        help="A cache's or view policy's fingerprint to keep as well (repeatable).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", metavar="", help="Only list what would be removed."
    ),
    feature_cache: str | None = typer.Option(
        None, "--feature-cache", metavar="FOLDER|s3://BUCKET/PREFIX", help=FEATURE_CACHE_HELP
    ),
) -> None:
    """Remove feature caches except the most recently used ones (and --keep), the augmented
    views of all but the most recently used policies of the caches kept (and --keep), and
    the dropout sweep results of every cache that is gone. A cache that a running job
    reads or writes, on this machine or another, is left alone."""
    from inception_retrain.dropout.sweep_folders import prune_sweeps
    from inception_retrain.features.feature_cache import prune_caches
    from inception_retrain.features.view_cache import prune_views

    root = _cache_root(workdir, feature_cache)
    with _one_line():
        removed = prune_caches(
            workdir, keep=keep, keep_latest=keep_latest, dry_run=dry_run, root=root
        )
    verb = "would remove" if dry_run else "removed"
    for cache in removed:
        typer.echo(
            f"{verb} {cache['fingerprint']} ({cache['images']} images, "
            f"{cache['bytes'] / 1e6:.1f} MB, last used {when(cache['last_used'])})"
        )
    total = sum(c["bytes"] for c in removed) / 1e6
    typer.echo(f"{verb} {len(removed)} cache(s), {total:.1f} MB")
    gone = {c["fingerprint"] for c in removed}
    with _one_line():
        views = prune_views(workdir, keep, keep_latest, dry_run, skip_caches=gone, root=root)
    for view in views:
        typer.echo(
            f"{verb} views of policy {view['fingerprint']} in cache {view['cache']} "
            f"({view['rows']} rows, {view['bytes'] / 1e6:.1f} MB, last used "
            f"{when(view['last_used'])})"
        )
    if views:
        total = sum(v["bytes"] for v in views) / 1e6
        typer.echo(f"{verb} the views of {len(views)} policy folder(s), {total:.1f} MB")
    sweeps = prune_sweeps(workdir, gone, dry_run=dry_run, only_removed=bool(feature_cache))
    for sweep in sweeps:
        typer.echo(
            f"{verb} sweep results {sweep['path'].name} ({sweep['results']} trainings, "
            f"cache {sweep['backbone_fingerprint']})"
        )
    if sweeps:
        total = sum(s["bytes"] for s in sweeps) / 1e6
        typer.echo(f"{verb} {len(sweeps)} sweep result folder(s), {total:.1f} MB")
