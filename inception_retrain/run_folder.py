"""Finding a flow run's run folder, and the failure summary written into it."""

from __future__ import annotations

import json
from pathlib import Path

from inception_retrain.files import atomic_write_json, atomic_write_text


def run_dir_for_flow_run(workdir: str | Path, flow_run_id) -> Path | None:
    """The run folder whose config.json names `flow_run_id` (newest first)."""
    runs = Path(workdir) / "runs"
    if flow_run_id is None or not runs.is_dir():
        return None
    for run_dir in sorted(runs.iterdir(), reverse=True):
        try:
            recorded = json.loads((run_dir / "config.json").read_text())["flow_run_id"]
        except (OSError, ValueError, KeyError):
            continue
        if recorded == str(flow_run_id):
            return run_dir
    return None


def write_failure_summary(flow, flow_run, state) -> None:
    """Prefect on_failure/on_crashed hook: write failure.json and failure.md to the run folder."""
    config = (flow_run.parameters or {}).get("config") or {}
    if not isinstance(config, dict):
        config = config.model_dump()
    workdir = config.get("workdir")
    run_dir = run_dir_for_flow_run(workdir or "workdir", flow_run.id)
    if run_dir is None:
        return
    message = state.message or state.name
    atomic_write_json(
        run_dir / "failure.json",
        {"flow_run_id": str(flow_run.id), "state": state.name, "message": message},
    )
    atomic_write_text(
        run_dir / "failure.md",
        f"# Run failed\n\n- flow run: `{flow_run.id}`\n- state: {state.name}\n\n"
        f"**Cause:** {message}\n",
    )
