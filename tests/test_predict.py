"""Batch prediction: files and folders in, per-image probabilities out; bad files reported."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from inception_retrain.registry.versions import write_champion


@pytest.fixture
def inbox(tmp_path, tiny_run) -> tuple[Path, dict[str, float]]:
    """A folder of the tiny run's test images (nested, one upper-case extension), plus a
    broken image, a hidden image and a text file; and the pipeline's P(class 1) per file.
    The hidden image is ignored; the text file and the broken image are error rows, with the
    reasons ingestion gives them."""
    predictions = pq.read_table(tiny_run.run_dir / "test_predictions.parquet").to_pylist()
    positive = f"p_{tiny_run.manifest.class_names[1]}"
    folder = tmp_path / "inbox"
    expected = {}
    for i, row in enumerate(predictions):
        source = Path(row["uri"])
        suffix = source.suffix.upper() if i == 0 else source.suffix
        target = folder / ("nested" if i % 2 else "") / f"image-{i}{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        expected[str(target)] = row[positive]
    (folder / "broken.jpg").write_text("not an image\n")
    shutil.copy(predictions[0]["uri"], folder / ".hidden.png")
    (folder / "notes.txt").write_text("not an image either\n")
    return folder, expected


def champion_workdir(tmp_path: Path, tiny_version) -> Path:
    """A workdir whose champion is (a hard-linked copy of) the tiny exported model."""
    workdir = tmp_path / "work"
    target = workdir / "models" / tiny_version.version
    shutil.copytree(tiny_version.path, target, copy_function=os.link)
    write_champion(workdir / "models", {"version": tiny_version.version})
    return workdir


def test_predict_files_writes_probabilities_and_reports_bad_files(
    tiny_run, tiny_version, inbox, tmp_path
):
    from inception_retrain.registry.predict import predict_files

    folder, expected = inbox
    missing = tmp_path / "missing.png"
    output = tmp_path / "out" / "predictions.csv"
    summary = predict_files(tiny_version.path, [folder, missing], output)

    bad = {
        str(folder / "broken.jpg"): "not-an-image",
        str(folder / "notes.txt"): "unsupported-extension",
        str(missing): "unreadable",
    }
    assert summary["n_files"] == len(expected) + len(bad)
    assert summary["n_ok"] == len(expected)
    assert summary["n_failed"] == len(bad)
    with open(output, newline="") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {*expected, *bad}  # no hidden file
    names = tiny_run.manifest.class_names
    for path, p1 in expected.items():
        row = rows[path]
        assert row["status"] == "ok" and row["error"] == ""
        assert float(row[f"p_{names[1]}"]) == pytest.approx(p1, abs=1e-5)
        assert float(row[f"p_{names[0]}"]) == pytest.approx(1 - p1, abs=1e-5)
        assert row["predicted"] == names[int(p1 > 0.5)]
    for path, reason in bad.items():  # the reasons ingestion gives the same files
        assert (rows[path]["status"], rows[path]["error"]) == ("error", reason)
        assert rows[path][f"p_{names[1]}"] == ""  # no probabilities for failures
    assert "No such file" in rows[str(missing)]["detail"]


def test_parquet_output_and_bad_inputs(tiny_version, inbox, tmp_path):
    from inception_retrain.plumbing.errors import DataError, PipelineError
    from inception_retrain.registry.predict import predict_files

    folder, expected = inbox
    output = tmp_path / "predictions.parquet"
    summary = predict_files(tiny_version.path, [folder / "broken.jpg", folder / "nested"], output)
    table = pq.read_table(output)
    assert table.num_rows == summary["n_files"] == 1 + sum("nested" in p for p in expected)
    paths, status = table.column("path").to_pylist(), table.column("status").to_pylist()
    statuses = dict(zip(paths, status, strict=True))
    assert statuses.pop(str(folder / "broken.jpg")) == "error"
    assert set(statuses.values()) == {"ok"}
    p = table.column("confidence").to_numpy(zero_copy_only=False)
    assert np.isnan(p[0]) and (p[1:] >= 0.5).all()

    with pytest.raises(PipelineError, match="output must end in .csv or .parquet"):
        predict_files(tiny_version.path, [folder], tmp_path / "out.xlsx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files found"):
        predict_files(tiny_version.path, [tmp_path / "empty"], tmp_path / "x.csv")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "inception_retrain.cli", "predict", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_predict_uses_the_champion_and_fails_cleanly_without_one(tiny_version, inbox, tmp_path):
    folder, expected = inbox
    workdir = champion_workdir(tmp_path, tiny_version)
    output = tmp_path / "cli.parquet"
    done = run_cli("--workdir", str(workdir), "--output", str(output), str(folder), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"wrote {len(expected) + 2} predictions (2 failed)" in done.stdout
    assert pq.read_table(output).num_rows == len(expected) + 2

    empty = tmp_path / "no-models"
    done = run_cli("--workdir", str(empty), str(folder), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: no champion model in")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_batch_predict_flow(tiny_version, inbox, tmp_path):
    from inception_retrain.flows.predict import batch_predict

    folder, expected = inbox
    workdir = champion_workdir(tmp_path, tiny_version)
    output = tmp_path / "flow.csv"
    summary = batch_predict(paths=[str(folder)], output=str(output), workdir=str(workdir))
    assert summary["n_ok"] == len(expected) and summary["n_failed"] == 2
    assert summary["model_dir"] == str(workdir / "models" / tiny_version.version)
    with open(output, newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(expected) + 2
