"""The data checks in the retrain flow, through the real command line.

Default suite: a run whose data break the contract (a class with fewer images than the
contract's minimum) stops right after validation, before extraction: one line in the run's
state message and status.json, the run folder keeps its manifest and
data_report.{json,html}, `runs ls` shows the block, and the run's `data-drift` table artifact
is in Prefect.

Extended (`make test-extended`): the nightly story on one workdir, every run a real
`inception-retrain run` (tiny settings): the first run on a three-class folder becomes
champion; the folder grows with images from the same generator and the next run compares
them with the champion's data, writes data_report.html and the data-drift artifact (two
runs of history), and flags nothing; then the third class is emptied and the run is blocked;
`runs ls` shows each run's anomalies and drift. And the broken slice end to end: a champion
on a camA/camB folder, then camB's training images relabelled at random: the promotion is
refused naming `source=camB`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from data_check_images import write_images
from tiny_cli import TINY_SWEEP

CLI = [sys.executable, "-m", "inception_retrain.cli"]
TINY = [
    "--weights",
    "random:0",
    "--image-size",
    "75",
    "--hidden-units",
    "64,64",
    "--split-fractions",
    "0.5,0.2,0.3",
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--patience",
    "0",
    *TINY_SWEEP,
]
RUN_TIMEOUT_S = 600


def run_cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *arguments], capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=cwd
    )


def errors(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


def data_drift_artifacts(flow_run_id: str) -> list:
    """The `data-drift` artifacts of a flow run, from this process's Prefect database
    (PREFECT_HOME, which CLI subprocesses inherit)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["data-drift"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )


def table_rows(artifact) -> list[dict]:
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


def test_a_blocked_run_stops_before_extraction_with_one_line_and_keeps_its_report(tmp_path):
    """In process (`run_retrain`, what `inception-retrain run` calls; the CLI prints the
    failure's one line as `error: ...`, test_flow.py): the run's message, status.json, the
    kept files, `runs ls`, and the run's data-drift artifact."""
    from typer.testing import CliRunner

    from inception_retrain.cli.main import app
    from inception_retrain.config import RetrainConfig
    from inception_retrain.flows.retrain import run_retrain

    data = tmp_path / "photos"
    write_images(data / "blobs", "blobs", range(20))
    write_images(data / "stripes", "stripes", range(6))
    work = tmp_path / "work"
    config = RetrainConfig(
        data=str(data),
        workdir=work,
        weights="random:0",
        image_size=75,
        split_fractions=(0.5, 0.2, 0.3),
    )
    run_dir, ok, message = run_retrain(config)

    assert not ok
    assert message == (
        "data-checks failed: blocked: class-size: class 'stripes' has 6 valid images, fewer than 10"
    )
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and status["message"] == message
    assert status["data_checks"] == {
        "anomalies": 1,
        "flagged": ["class-size"],
        "blocked": True,
        "drift": "not-run",
        "reference": None,
    }
    assert message in (run_dir / "failure.md").read_text()
    for kept in ("manifest.parquet", "ingest.json", "data_report.json", "data_report.html"):
        assert (run_dir / kept).is_file(), kept
    assert not (work / "cache").exists() and not (run_dir / "extract.json").exists()
    report = json.loads((run_dir / "data_report.json").read_text())
    assert [c["name"] for c in report["checks"] if c["blocking"]] == ["class-size"]
    assert message.endswith(report["reason"])

    listed = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["runs", "ls", "--workdir", str(work)])
    line = listed.output.strip().splitlines()[1]
    assert "failed" in line and "1 (blocked)" in line and "not-run" in line
    assert line.rstrip().endswith(str(run_dir / "data_report.html"))

    flow_run_id = json.loads((run_dir / "config.json").read_text())["flow_run_id"]
    (artifact,) = data_drift_artifacts(flow_run_id)
    (row,) = table_rows(artifact)
    assert row["run"] == run_dir.name and row["blocked"] is True
    assert row["flagged"] == "class-size" and row["drift"] == "not-run"


# --- extended: the nightly story -------------------------------------------------------------


def _status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


@pytest.mark.extended
def test_nightly_runs_on_grown_data_report_drift_and_a_class_emptied_is_blocked(tmp_path):
    data = tmp_path / "photos"
    for class_name, look in (("blobs", "demo"), ("stripes", "demo"), ("rings", "rings")):
        label = "blobs" if look == "rings" else class_name
        write_images(data / class_name, label, range(40), look)
    work = tmp_path / "work"
    options = ["--data", str(data), "--workdir", str(work), *TINY]

    first = run_cli("run", *options, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    first_dir = Path(first.stdout.strip().splitlines()[-1])
    assert _status(first_dir)["data_checks"]["drift"] == "no-reference"
    assert _status(first_dir)["promotion"]["decision"] == "promoted"

    for class_name, look in (("blobs", "demo"), ("stripes", "demo"), ("rings", "rings")):
        label = "blobs" if look == "rings" else class_name
        write_images(data / class_name, label, range(100, 125), look, name="nightly")
    grown = run_cli("run", *options, cwd=tmp_path)
    assert grown.returncode == 0, grown.stderr[-3000:]
    grown_dir = Path(grown.stdout.strip().splitlines()[-1])
    report = json.loads((grown_dir / "data_report.json").read_text())
    assert report["reference_text"].startswith("champion v0001")
    assert report["n_new"] == 75 and (grown_dir / "data_report.html").is_file()
    assert report["summary"]["drift"] == "ok" and report["summary"]["anomalies"] == 0
    flow_run_id = json.loads((grown_dir / "config.json").read_text())["flow_run_id"]
    (artifact,) = data_drift_artifacts(flow_run_id)
    history = table_rows(artifact)
    assert [row["run"] for row in history] == [grown_dir.name, first_dir.name]
    assert history[0]["features_p"] is not None and history[1]["drift"] == "no-reference"

    shutil.rmtree(data / "rings")
    (data / "rings").mkdir()  # emptied, not removed
    emptied = run_cli("run", *options, cwd=tmp_path)
    assert emptied.returncode == 1
    assert errors(emptied) == [
        "error: data-checks failed: blocked: class-missing: class 'rings' of the reference "
        "has no valid image (it had 65)"
    ]
    emptied_dir = Path(emptied.stdout.strip().splitlines()[-1])
    assert not (emptied_dir / "head.keras").exists()

    listed = run_cli("runs", "ls", "--workdir", str(work), cwd=tmp_path).stdout
    lines = listed.strip().splitlines()[1:]
    assert "no-reference" in lines[0] and " ok " in lines[1]
    assert "1 (blocked)" in lines[2] and "not-run" in lines[2]


@pytest.mark.extended
def test_a_broken_slice_refuses_the_nightly_promotion_naming_it(tmp_path):
    from test_slice_gate import write_layout

    good, broken = tmp_path / "good", tmp_path / "broken"
    write_layout(good)
    write_layout(broken, broken_source="camB")
    work = tmp_path / "work"
    settings = [
        "--workdir",
        str(work),
        "--weights",
        "random:0",
        "--image-size",
        "75",
        "--feature-dtype",
        "float32",
        "--hidden-units",
        "64,64",
        "--learning-rate",
        "0.0003",
        "--epochs",
        "30",
        "--batch-size",
        "16",
        "--patience",
        "0",
        "--promotion-tolerance",
        "1",
        *TINY_SWEEP,
    ]
    champion = run_cli("run", "--data", str(good), *settings, cwd=tmp_path)
    assert champion.returncode == 0, champion.stderr[-3000:]
    challenger = run_cli("run", "--data", str(broken), *settings, cwd=tmp_path)
    assert challenger.returncode == 0, challenger.stderr[-3000:]
    run_dir = Path(challenger.stdout.strip().splitlines()[-1])
    promotion = json.loads((run_dir / "promotion.json").read_text())
    assert promotion["decision"] == "rejected"
    assert "source=camB" in promotion["refused_slices"]
    assert "source=camA" not in promotion["refused_slices"]
    assert "slice source=camB lost" in promotion["reason"]
    report = json.loads((run_dir / "data_report.json").read_text())
    conflicts = {c["name"]: c for c in report["checks"]}["label-conflict"]
    assert conflicts["statistic"] == 0  # new images: nothing relabelled, only new labels
    assert "slice source=camB lost" in (run_dir / "evaluation.md").read_text()
