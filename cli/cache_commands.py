"""`inception-retrain cache ...`: the feature caches of a workdir, their augmented views.

    inception-retrain cache ls [--workdir W]        caches: images, views, size, use, backbone
    inception-retrain cache prune [--keep-latest N] [--keep FP] [--dry-run]
                                                    remove old caches, old view policies and
                                                    the sweep results of removed caches

The core does the work (`inception_retrain.feature_cache`, `view_cache`,
`dropout.sweep_folders`); these commands import it when they run, so `inception-retrain
--help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

cache_app = typer.Typer(no_args_is_help=True, help="List and prune feature caches.")


@cache_app.command("ls")
def cache_ls_command(
    workdir: Path = typer.Option(Path("workdir"), help="Holds cache/."),
) -> None:
    """List feature caches: fingerprint, images, augmented views, size, dtype, last used,
    layer, weights."""
    from inception_retrain.feature_cache import list_caches
    from inception_retrain.view_cache import view_totals

    caches = list_caches(workdir)
    for cache in caches:  # views are counted apart from images; MB covers both
        policies, rows, size = view_totals(Path(cache["path"]))
        cache.update(views=f"{rows} ({policies} policies)" if policies else "-")
        cache["bytes"] += size
    if not caches:
        typer.echo(f"no feature caches under {workdir / 'cache'}")
        return
    typer.echo(format_cache_table(caches))


def format_cache_table(caches: list[dict]) -> str:
    header = (
        "fingerprint", "images", "views", "MB", "dtype", "last used", "in use", "layer", "weights"
    )  # fmt: skip
    lines = [header] + [
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
    widths = [max(len(row[i]) for row in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in lines
    )


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
) -> None:
    """Remove feature caches except the most recently used ones (and --keep), the augmented
    views of all but the most recently used policies of the caches kept (and --keep), and
    the dropout sweep results of every cache that is gone."""
    from inception_retrain.dropout.sweep_folders import prune_sweeps
    from inception_retrain.feature_cache import prune_caches
    from inception_retrain.view_cache import prune_views

    removed = prune_caches(workdir, keep=keep, keep_latest=keep_latest, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for cache in removed:
        typer.echo(
            f"{verb} {cache['fingerprint']} ({cache['images']} images, "
            f"{cache['bytes'] / 1e6:.1f} MB, last used {cache['last_used'] or '-'})"
        )
    total = sum(c["bytes"] for c in removed) / 1e6
    typer.echo(f"{verb} {len(removed)} cache(s), {total:.1f} MB")
    gone = {c["fingerprint"] for c in removed}
    views = prune_views(workdir, keep, keep_latest, dry_run, skip_caches=gone)
    for view in views:
        typer.echo(
            f"{verb} views of policy {view['fingerprint']} in cache {view['cache']} "
            f"({view['rows']} rows, {view['bytes'] / 1e6:.1f} MB, last used "
            f"{view['last_used'] or '-'})"
        )
    if views:
        total = sum(v["bytes"] for v in views) / 1e6
        typer.echo(f"{verb} the views of {len(views)} policy folder(s), {total:.1f} MB")
    sweeps = prune_sweeps(workdir, {c["fingerprint"] for c in removed}, dry_run=dry_run)
    for sweep in sweeps:
        typer.echo(
            f"{verb} sweep results {sweep['path'].name} ({sweep['results']} trainings, "
            f"cache {sweep['backbone_fingerprint']})"
        )
    if sweeps:
        total = sum(s["bytes"] for s in sweeps) / 1e6
        typer.echo(f"{verb} {len(sweeps)} sweep result folder(s), {total:.1f} MB")
