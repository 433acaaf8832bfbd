"""Sliced evaluation and the promotion gate by slice, on real images, features and heads.

The known answer (issue 22, item 5): a train/validation/test folder with two source folders
per class, `camA` (classes told apart by colour: warm blobs, cool stripes) and `camB` (told
apart by exposure, the other way round from what camA's colours would suggest: bright blobs,
dark stripes); a random-weights backbone separates both in a few epochs at 75 px. The
champion is trained on it as it is. Then camB's training images are replaced by new ones
relabelled at random (half of each look to each class) while every test image keeps its
label, and a new head is trained. The overall rule is opened (`--promotion-tolerance 1`:
camB is half of this small test split, so the overall score drops too) so that only the
slices decide, and the gate refuses the model, naming `source=camB`, not `source=camA`.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
from data_check_images import write_images

LOOKS = {
    "camA": {"blobs": "warm", "stripes": "cool"},
    "camB": {"blobs": "bright", "stripes": "dark"},
}
SPLITS = {"train": range(0, 40), "validation": range(200, 210), "test": range(300, 315)}


def write_layout(folder: Path, broken_source: str | None = None) -> None:
    for split, indices in SPLITS.items():
        for source, looks in LOOKS.items():
            for class_name, look in looks.items():
                if split == "train" and source == broken_source:
                    # new images, their labels drawn at random: half of each look per class
                    order = np.random.default_rng([7, len(class_name)]).permutation(40)
                    for k, index in enumerate(range(100, 140)):
                        target = ("blobs", "stripes")[order[k] % 2]
                        write_images(folder / split / target / source, class_name, [index], look)
                else:
                    write_images(folder / split / class_name / source, class_name, indices, look)


def _config(data: Path, work: Path, **overrides):
    from inception_retrain.config import RetrainConfig
    from inception_retrain.training.head_spec import HeadSpec

    return RetrainConfig(
        data=str(data),
        workdir=work,
        weights="random:0",
        image_size=75,
        feature_dtype="float32",
        head=HeadSpec(hidden_units=(64, 64), learning_rate=3e-4),
        epochs=30,
        batch_size=16,
        patience=0,
        **overrides,
    )


def _run(config, slices_csv=None):
    from inception_retrain.data.ingest import ingest
    from inception_retrain.evaluation.evaluate import evaluate
    from inception_retrain.evaluation.slices import slice_metrics
    from inception_retrain.features.extraction import extract_features
    from inception_retrain.runs.run_folder import new_run_dir
    from inception_retrain.training.train import train_head

    run_dir = new_run_dir(config.workdir)
    manifest = ingest(config.ingest, run_dir)
    cache = extract_features(manifest, config.extraction, run_dir)
    head = train_head(manifest, cache, config.training, run_dir)
    evaluation = evaluate(manifest, cache, head, run_dir)
    sliced = slice_metrics(manifest, evaluation, config.slicing, run_dir)
    return SimpleNamespace(
        run_dir=run_dir,
        manifest=manifest,
        cache=cache,
        head=head,
        evaluation=evaluation,
        sliced=sliced,
    )


@pytest.fixture(scope="module")
def champion_and_broken(tmp_path_factory):
    from inception_retrain.registry.export import export_model
    from inception_retrain.registry.promotion import decide_promotion, record_promotion

    root = tmp_path_factory.mktemp("slices")
    work = root / "work"
    good = root / "good"
    write_layout(good)
    user = root / "user.csv"
    config = _config(good, work, promotion_tolerance=1.0)
    champion = _run(config)
    decision = decide_promotion(champion.evaluation, config.promotion, champion.sliced)
    version = export_model(
        champion.manifest,
        champion.cache,
        champion.head,
        champion.evaluation,
        config.promotion,
        champion.run_dir,
    )
    record_promotion(decision, version, champion.evaluation, config.promotion, champion.run_dir)

    broken = root / "broken"  # the same validation and test files, byte for byte
    write_layout(broken, broken_source="camB")
    predictions = champion.run_dir / "test_predictions.parquet"
    ids = pq.read_table(predictions, columns=["content_id"]).column(0).to_pylist()
    with open(user, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["content_id", "slice"])
        writer.writerows([(cid, "first-half") for cid in ids[: len(ids) // 2]])
        writer.writerow(["not-a-test-image", "first-half"])
    config = _config(broken, work, promotion_tolerance=1.0, slices_csv=user)
    challenger = _run(config)
    refusal = decide_promotion(challenger.evaluation, config.promotion, challenger.sliced)
    return SimpleNamespace(
        champion=champion,
        challenger=challenger,
        refusal=refusal,
        version=version,
        ids=ids,
        policy=config.promotion,
    )


def test_a_slice_broken_on_purpose_refuses_the_promotion_naming_it(champion_and_broken):
    refusal = champion_and_broken.refusal
    rows = {row["slice"]: row for row in refusal.slices}
    assert refusal.champion_score_source == "recorded on the same test split"
    assert refusal.champion_score is not None  # compared: the overall rule passes (tolerance 1)
    assert not refusal.promoted
    assert "source=camB" in refusal.refused_slices and "source=camA" not in refusal.refused_slices
    assert refusal.reason.startswith("slice ") and "slice source=camB lost " in refusal.reason
    assert "\n" not in refusal.reason
    camb = rows["source=camB"]
    assert camb["n"] == 30 and camb["champion_accuracy"] >= 0.9 and camb["accuracy"] <= 0.7
    assert camb["verdict"] == "worse" and camb["high"] < -0.10
    assert rows["source=camA"]["verdict"] != "worse"
    assert refusal.slice_gate == "recorded on the same test split"


def test_both_gates_apply_a_damaged_champion_pointer_is_recovered_then_the_slice_refuses(
    champion_and_broken,
):
    """The champion gate (issue 23) finds the champion a damaged pointer hid, and the slice
    gate still compares with it; with nothing to recover, nothing is promoted."""
    from inception_retrain.registry.champion_gate import ChampionUnknownError
    from inception_retrain.registry.promotion import decide_promotion

    case = champion_and_broken
    models = case.policy.models_dir
    pointer = models / "champion.json"
    history = models / "champion-history.jsonl"
    kept_pointer, kept_history = pointer.read_bytes(), history.read_bytes()
    try:
        pointer.write_text('{"version": ')  # cut short, as a crash mid-write would
        decision = decide_promotion(case.challenger.evaluation, case.policy, case.challenger.sliced)
        assert decision.previous_champion == case.version.version
        assert not decision.promoted and decision.refused_slices == case.refusal.refused_slices
        history.write_text("")
        with pytest.raises(ChampionUnknownError, match="refusing to promote"):
            decide_promotion(case.challenger.evaluation, case.policy, case.challenger.sliced)
    finally:
        pointer.write_bytes(kept_pointer)
        history.write_bytes(kept_history)


def test_sliced_metrics_have_intervals_and_user_slices(champion_and_broken):
    from inception_retrain.evaluation.slices import read_slices

    document = read_slices(champion_and_broken.challenger.sliced.json_path)
    slices = {s["slice"]: s for s in document["slices"]}
    assert {"class=blobs", "class=stripes", "source=camA", "source=camB"} <= set(slices)
    assert {name for name in slices if name.startswith("format=")} <= {"format=JPEG", "format=PNG"}
    assert any(name.startswith("size=") for name in slices)
    assert slices["user=first-half"]["n"] == len(champion_and_broken.ids) // 2
    assert document["user_ids_not_in_test"] == 1
    for s in slices.values():
        assert s["accuracy_low"] <= s["accuracy"] <= s["accuracy_high"]
        assert s["accuracy"] == pytest.approx(s["correct"] / s["n"])
    by_kind = {}
    for s in document["slices"]:
        by_kind.setdefault(s["kind"], 0)
        by_kind[s["kind"]] += s["n"]
    assert by_kind["class"] == by_kind["source"] == by_kind["format"] == document["n_test"] == 60


def test_the_evaluation_report_shows_the_slices_and_the_gate(champion_and_broken, tmp_path):
    from inception_retrain.evaluation.report import write_evaluation_report

    challenger = champion_and_broken.challenger
    record = {
        **champion_and_broken.refusal.model_dump(mode="json", exclude={"sliced"}),
        "decision": "rejected",
        "version": None,
    }
    md_path, html_path = write_evaluation_report(challenger.run_dir, record)
    markdown = md_path.read_text()
    assert "## Slices" in markdown and "| source=camB | 30 |" in markdown
    assert "Slice gate" in markdown and "| worse |" in markdown
    assert 'id="slices"' in html_path.read_text()


def test_a_user_slices_file_without_its_columns_is_one_clear_error(tmp_path):
    from inception_retrain.evaluation.slices import read_user_slices
    from inception_retrain.plumbing.errors import DataError

    path = tmp_path / "slices.csv"
    path.write_text("id,group\nabc,x\n")
    with pytest.raises(DataError, match=r"lacks the column\(s\) content_id, slice"):
        read_user_slices(path)
    path.write_text("content_id,slice\nabc,x\nabc,y\nabc,x\n,z\n")
    assert read_user_slices(path) == {"abc": ["x", "y"]}


def test_a_slices_file_without_its_columns_is_refused_when_the_run_starts(tmp_path):
    """Refused by the command line in one line, before any stage (not after training)."""
    path = tmp_path / "slices.csv"
    path.write_text("id,group\nabc,x\n")
    work = tmp_path / "work"
    done = subprocess.run(
        [sys.executable, "-m", "inception_retrain.cli", "run", "--workdir", str(work)]
        + ["--slices-csv", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: --slices-csv: slices file") and "lacks the column(s)" in line
    assert not work.exists()


def test_size_buckets():
    from inception_retrain.evaluation.slice_spec import SliceSpec, size_bucket

    edges = SliceSpec().size_edges
    assert [size_bucket(s, edges) for s in (90, 128, 255, 256, 600)] == [
        "<128px",
        "128-255px",
        "128-255px",
        "256-511px",
        ">=512px",
    ]
    with pytest.raises(ValueError, match="increasing"):
        SliceSpec(size_edges=(256, 128))
