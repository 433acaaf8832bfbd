"""`inception-retrain runs|models|cache ...`: what a workdir holds, listed and pruned.

    inception-retrain runs ls [--workdir W]              runs with status, data and promotion
    inception-retrain models ls [--workdir W]            versions, sizes, the champion
    inception-retrain models prune --keep N [--dry-run]  keep the champion and the newest N
    inception-retrain cache ls [--workdir W]             feature caches, their views, sizes, use
    inception-retrain cache prune [--keep-latest N]      caches, old view policies, and the
                                                         sweep results of removed caches
    ... cache ls|prune --feature-cache s3://bucket/p     the same for another cache root, a
                                                         folder or an object-store prefix

The core does the work (`workdir.list_runs`, `registry.prune_versions`,
`feature_cache.prune_caches`, `view_cache.prune_views`, `dropout.sweep_folders.prune_sweeps`);
these commands import it
when they run, so `inception-retrain --help` stays fast.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

runs_app = typer.Typer(no_args_is_help=True, help="List the runs of a workdir.")
models_app = typer.Typer(no_args_is_help=True, help="List and prune model versions.")
cache_app = typer.Typer(no_args_is_help=True, help="List and prune feature caches.")


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


def _model(promotion: dict | None) -> str:
    if not promotion:
        return "-"
    return f"{promotion.get('version') or 'not published'} ({promotion.get('decision', '?')})"


@runs_app.command("ls")
def runs_ls_command(
    workdir: Path = typer.Option(Path("workdir"), help="Holds runs/."),
) -> None:
    """List runs: status (running, completed, failed, killed), start, data, images, model.

    A run that says running but whose process is gone is marked killed here.
    """
    from inception_retrain.runs.workdir import list_runs

    runs = list_runs(workdir)
    if not runs:
        typer.echo(f"no runs under {workdir / 'runs'}")
        return
    header = ("run", "status", "started", "data", "images", "model", "message")
    rows = [
        (
            r["run"],
            r["state"],
            r["started"].replace("T", " ").removesuffix("+00:00") or "-",
            r["data"],
            "-" if r["images"] is None else f"{r['images']} ok, {r['skipped']} skipped",
            _model(r["promotion"]),
            r["message"] or "",
        )
        for r in runs
    ]
    typer.echo(table(header, rows))


@models_app.command("ls")
def models_ls_command(
    workdir: Path = typer.Option(Path("workdir"), help="Holds models/."),
) -> None:
    """List model versions, oldest first, with their size; the champion is marked."""
    from inception_retrain.plumbing.errors import PipelineError
    from inception_retrain.registry.versions import list_version_info, models_dir

    try:
        versions = list_version_info(models_dir(workdir))
    except PipelineError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if not versions:
        typer.echo(f"no model versions under {models_dir(workdir)}")
        return
    rows = [
        (v["version"], f"{v['bytes'] / 1e6:.1f}", "yes" if v["champion"] else "-") for v in versions
    ]
    typer.echo(table(("version", "MB", "champion"), rows))


@models_app.command("prune")
def models_prune_command(
    keep: int = typer.Option(..., "--keep", min=0, help="Newest versions to keep."),
    workdir: Path = typer.Option(Path("workdir"), help="Holds models/."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be removed."),
) -> None:
    """Remove model versions except the champion and the newest --keep."""
    from inception_retrain.plumbing.errors import PipelineError
    from inception_retrain.registry.versions import models_dir, prune_versions

    try:
        removed = prune_versions(models_dir(workdir), keep=keep, dry_run=dry_run)
    except PipelineError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
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
    workdir: Path = typer.Option(Path("workdir"), help="Holds cache/."),
    feature_cache: str | None = typer.Option(None, "--feature-cache", help=FEATURE_CACHE_HELP),
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
            c["last_used"] or "-",
            "yes" if c["in_use"] else "-",
            f"{c['layer']}@{c['image_size']}px",
            c["weights_description"],
        )
        for c in caches
    ]
    return table(header, rows)


@cache_app.command("prune")
def cache_prune_command(
    workdir: Path = typer.Option(Path("workdir"), help="Holds cache/."),
    keep_latest: int = typer.Option(
        1, min=0, help="Keep this many most recently used caches (and view policies of each)."
    ),
    keep: list[str] = typer.Option(
        [], help="A cache's or view policy's fingerprint to keep as well (repeatable)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be removed."),
    feature_cache: str | None = typer.Option(None, "--feature-cache", help=FEATURE_CACHE_HELP),
) -> None:
    """Remove feature caches except the most recently used ones (and --keep), the augmented
    views of all but the most recently used policies of the caches kept (and --keep), and
    the dropout sweep results of every cache that is gone. A cache that a running job
    reads or writes, on this machine or another, is left alone."""
    from inception_retrain.dropout.sweep_folders import prune_sweeps
    from inception_retrain.features.feature_cache import prune_caches
    from inception_retrain.features.view_cache import prune_views

    root = _cache_root(workdir, feature_cache)
    removed = prune_caches(workdir, keep=keep, keep_latest=keep_latest, dry_run=dry_run, root=root)
    verb = "would remove" if dry_run else "removed"
    for cache in removed:
        typer.echo(
            f"{verb} {cache['fingerprint']} ({cache['images']} images, "
            f"{cache['bytes'] / 1e6:.1f} MB, last used {cache['last_used'] or '-'})"
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
            f"{view['last_used'] or '-'})"
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
