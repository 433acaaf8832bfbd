"""Registry: promotion decisions, re-scoring on the same test split, atomic champion pointer.

Versions are hard-linked copies of the real exported model (tiny_version) with their own
metrics.json, so each test has a registry of complete version folders at little cost.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inception_retrain.evaluation.evaluate import Evaluation
from inception_retrain.plumbing.files import read_json, write_json
from inception_retrain.registry.versions import ModelVersion


def add_version(
    workdir: Path, source: Path, metrics: dict, split: str, same_model: bool = False
) -> ModelVersion:
    """Publish a copy of `source` whose metrics.json records `metrics` on test split `split`.

    Each copy stands for another model (its own head fingerprint), unless `same_model`.
    """
    from inception_retrain.registry.versions import models_dir, publish_version

    models = models_dir(workdir)
    models.mkdir(parents=True, exist_ok=True)
    staging = models / f".staging-test-{len(os.listdir(models))}"
    shutil.copytree(source, staging, copy_function=os.link)
    recorded = read_json(staging / "metrics.json")
    recorded.update(
        metrics={**metrics, "test_split_fingerprint": split}, test_split_fingerprint=split
    )
    if not same_model:
        recorded["lineage"]["head_fingerprint"] = f"another-head-{staging.name}"
    write_json(staging / "metrics.json", recorded)  # a new file: the link is not written
    path = publish_version(staging, models)
    return ModelVersion(
        version=path.name, path=path, promoted=False, score=None, champion_score=None
    )


def make_evaluation(run_dir: Path, tiny_run, metrics: dict, split: str) -> Evaluation:
    """An evaluation of the tiny run (its evaluation.json and plots copied into `run_dir`)
    with given metrics."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for path in tiny_run.run_dir.glob("*"):
        if path.name == "evaluation.json" or path.suffix == ".png":
            shutil.copy(path, run_dir / path.name)
    return Evaluation(
        json_path=run_dir / "evaluation.json",
        metrics={**metrics, "test_split_fingerprint": split},
    )


@pytest.fixture
def registry(tmp_path, tiny_run, tiny_version):
    """(config, new_version(metrics, split), new_evaluation(metrics, split)) on a fresh workdir."""
    config = tiny_run.config.model_copy(update={"workdir": tmp_path / "work"})
    counter = iter(range(1000))

    def new_version(metrics, split="split-a", same_model=False):
        return add_version(config.workdir, tiny_version.path, metrics, split, same_model)

    def new_evaluation(metrics, split="split-a"):
        return make_evaluation(tmp_path / f"run-{next(counter)}", tiny_run, metrics, split)

    return config, new_version, new_evaluation


def promote_evaluated(version: ModelVersion, evaluation: Evaluation, config) -> ModelVersion:
    from inception_retrain.registry.promotion import promote

    return promote(version, evaluation, config.promotion, evaluation.json_path.parent)


def champion_version(workdir: Path) -> str:
    return read_json(workdir / "models" / "champion.json")["version"]


def test_first_model_becomes_champion_and_the_reports_show_it(registry):
    from inception_retrain.evaluation.report import write_evaluation_report
    from inception_retrain.registry.promotion import promote, read_promotion
    from inception_retrain.registry.versions import resolve_model

    config, new_version, new_evaluation = registry
    version = new_version({"roc_auc": 0.7})
    evaluation = new_evaluation({"roc_auc": 0.7})
    result = promote(version, evaluation, config.promotion, evaluation.json_path.parent)

    assert result.promoted and result.score == pytest.approx(0.7) and result.champion_score is None
    pointer = read_json(config.workdir / "models" / "champion.json")
    assert pointer["version"] == version.version
    assert pointer["metric"] == "roc_auc" and pointer["score"] == pytest.approx(0.7)
    assert pointer["time"]
    assert resolve_model(config.workdir, "champion") == version.path
    record = read_json(evaluation.json_path.parent / "promotion.json")
    assert record["decision"] == "promoted" and "first champion" in record["reason"]
    # The evaluation report is rendered once the decision is known, and shows it.
    promotion = read_promotion(evaluation.run_dir)
    md_path, html_path = write_evaluation_report(evaluation.run_dir, promotion)
    assert md_path.read_text().count("## Promotion") == 1
    page = html_path.read_text()
    assert 'id="promotion-decision"' in page and "PROMOTED" in page
    assert page.count("<h2>Promotion</h2>") == 1


def test_challenger_must_reach_the_champion_score_minus_the_tolerance(registry):
    from inception_retrain.evaluation.report import write_evaluation_report
    from inception_retrain.registry.promotion import promote

    config, new_version, new_evaluation = registry
    champion = new_version({"roc_auc": 0.80})
    promote_evaluated(champion, new_evaluation({"roc_auc": 0.80}), config)

    worse = new_version({"roc_auc": 0.78})
    evaluation = new_evaluation({"roc_auc": 0.78})
    result = promote(worse, evaluation, config.promotion, evaluation.json_path.parent)
    assert not result.promoted
    assert champion_version(config.workdir) == champion.version
    record = read_json(evaluation.json_path.parent / "promotion.json")
    assert record["decision"] == "rejected"
    assert record["score"] == pytest.approx(0.78)
    assert record["champion_score"] == pytest.approx(0.80)
    assert record["champion_score_source"] == "recorded on the same test split"
    assert record["metric"] == "roc_auc" and record["tolerance"] == 0.0
    md_path, html_path = write_evaluation_report(evaluation.run_dir, record)
    markdown = md_path.read_text()
    assert "rejected" in markdown and "0.7800" in markdown and "0.8000" in markdown
    assert "REJECTED" in html_path.read_text()

    tolerant = config.model_copy(update={"promotion_tolerance": 0.05})
    result = promote_evaluated(worse, new_evaluation({"roc_auc": 0.78}), tolerant)
    assert result.promoted and result.champion_score == pytest.approx(0.80)
    assert champion_version(config.workdir) == worse.version


def test_neg_log_loss_prefers_the_lower_loss(registry):

    config, new_version, new_evaluation = registry
    config = config.model_copy(update={"promotion_metric": "neg_log_loss"})
    champion = new_version({"log_loss": 0.5})
    promote_evaluated(champion, new_evaluation({"log_loss": 0.5}), config)

    higher_loss = new_version({"log_loss": 0.6})
    assert not promote_evaluated(higher_loss, new_evaluation({"log_loss": 0.6}), config).promoted
    lower_loss = new_version({"log_loss": 0.4})
    result = promote_evaluated(lower_loss, new_evaluation({"log_loss": 0.4}), config)
    assert result.promoted
    assert result.score == pytest.approx(-0.4) and result.champion_score == pytest.approx(-0.5)
    assert champion_version(config.workdir) == lower_loss.version


def test_champion_scored_on_another_test_split_is_rescored_on_the_current_one(registry, tiny_run):
    from inception_retrain.registry.promotion import promote

    config, new_version, new_evaluation = registry
    actual = tiny_run.evaluation.metrics
    split = actual["test_split_fingerprint"]
    # The champion's recorded score (on an older test split) is a bogus 0.0: if it were used,
    # any challenger would win.
    older = "an-older-test-split"
    champion = new_version({"roc_auc": 0.0}, split=older)
    promote_evaluated(champion, new_evaluation({"roc_auc": 0.0}, older), config)

    challenger = new_version({"roc_auc": actual["roc_auc"] - 0.2}, split=split)
    evaluation = new_evaluation({"roc_auc": actual["roc_auc"] - 0.2}, split)
    result = promote(challenger, evaluation, config.promotion, evaluation.json_path.parent)
    # The champion is the same model as tiny_run's: re-scored on the same images from the raw
    # files, it gets the evaluation's ROC-AUC.
    assert result.champion_score == pytest.approx(actual["roc_auc"], abs=1e-6)
    assert not result.promoted
    assert champion_version(config.workdir) == champion.version
    record = read_json(evaluation.json_path.parent / "promotion.json")
    assert record["champion_score_source"].startswith("re-scored on the current test split")


def test_a_champion_with_other_classes_cannot_be_compared_and_is_replaced(registry, tiny_run):
    config, new_version, new_evaluation = registry
    champion = new_version({"roc_auc": 0.99}, split="an-older-test-split")
    labels = {"class_names": ["cats", "dogs"], "output": "sigmoid"}
    write_json(champion.path / "labels.json", labels)  # replaces the hard link
    promote_evaluated(champion, new_evaluation({"roc_auc": 0.99}, "an-older-test-split"), config)

    split = tiny_run.evaluation.metrics["test_split_fingerprint"]
    challenger = new_version({"roc_auc": 0.5}, split=split)
    evaluation = new_evaluation({"roc_auc": 0.5}, split)
    result = promote_evaluated(challenger, evaluation, config)
    assert result.promoted and result.champion_score is None
    assert champion_version(config.workdir) == challenger.version
    reason = read_json(evaluation.json_path.parent / "promotion.json")["reason"]
    assert "the champion predicts other classes (cats, dogs)" in reason


def test_resolve_model_errors_are_one_line(registry):
    from inception_retrain.registry.versions import ModelNotFoundError, resolve_model

    config, new_version, _ = registry
    with pytest.raises(ModelNotFoundError, match="no champion model") as error:
        resolve_model(config.workdir, "champion")
    assert "\n" not in str(error.value)
    version = new_version({"roc_auc": 0.5})
    assert resolve_model(config.workdir, version.version) == version.path
    with pytest.raises(ModelNotFoundError, match="no model version 'v9999-x'"):
        resolve_model(config.workdir, "v9999-x")
    with pytest.raises(ModelNotFoundError):
        resolve_model(config.workdir, "../../etc")


# --- atomicity: kill a promoting process and look at what it left ---------------------------

PROMOTER = """
import itertools, sys
from pathlib import Path
from inception_retrain.config import RetrainConfig
from inception_retrain.evaluation.evaluate import Evaluation
from inception_retrain.registry.promotion import promote
from inception_retrain.registry.versions import ModelVersion

workdir, evaluation_json, loop, *names = sys.argv[1:]
config = RetrainConfig(workdir=workdir, promotion_tolerance=1.0)  # every challenger wins
evaluation = Evaluation.model_validate_json(Path(evaluation_json).read_text())
print("ready", flush=True)
for name in itertools.cycle(names) if loop == "loop" else names:
    path = Path(workdir) / "models" / name
    version = ModelVersion(version=name, path=path, promoted=False, score=None, champion_score=None)
    promote(version, evaluation, config.promotion, evaluation.json_path.parent)
    print("promoted", name, flush=True)
"""


def start_promoter(config, evaluation, names, loop=False, crash_at=None):
    from inception_retrain.registry.promotion import CRASH_ENV

    artifact = evaluation.json_path.parent / "evaluation-artifact.json"
    artifact.write_text(evaluation.model_dump_json())
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at:
        env[CRASH_ENV] = crash_at
    command = [sys.executable, "-c", PROMOTER, str(config.workdir), str(artifact)]
    return subprocess.Popen(
        [*command, "loop" if loop else "once", *names],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_champion_is_complete(workdir: Path, allowed: set[str]) -> str:
    from inception_retrain.registry.versions import is_complete

    pointer = read_json(workdir / "models" / "champion.json")  # parses: never partial
    assert pointer["version"] in allowed
    assert is_complete(workdir / "models" / pointer["version"])
    return pointer["version"]


def test_a_crash_before_or_after_the_pointer_leaves_one_complete_champion(registry):

    config, new_version, new_evaluation = registry
    old = new_version({"roc_auc": 0.6})
    promote_evaluated(old, new_evaluation({"roc_auc": 0.6}), config)
    new = new_version({"roc_auc": 0.9})
    evaluation = new_evaluation({"roc_auc": 0.9})

    for crash_at, expected in (("before-pointer", old.version), ("after-pointer", new.version)):
        process = start_promoter(config, evaluation, [new.version], crash_at=crash_at)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == -signal.SIGKILL, stderr[-2000:]
        assert assert_champion_is_complete(config.workdir, {old.version, new.version}) == expected
    # The crashed runs wrote no promotion record; a completed one does.
    assert not (evaluation.json_path.parent / "promotion.json").exists()


def test_killing_a_promoting_process_at_random_moments_never_loses_the_champion(registry):

    config, new_version, new_evaluation = registry
    versions = [new_version({"roc_auc": 0.5 + i / 10}) for i in range(3)]
    promote_evaluated(versions[0], new_evaluation({"roc_auc": 0.5}), config)
    evaluation = new_evaluation({"roc_auc": 0.9})
    names = [v.version for v in versions]
    rng = random.Random(0)
    for _ in range(3):
        process = start_promoter(config, evaluation, names, loop=True)
        assert process.stdout.readline().strip() == "ready", process.stderr.read()[-2000:]
        # Wait for a completed promotion (a condition, however slow the machine), then kill
        # at a random moment of the next ones: mid-write, between writes, under the lock.
        line = process.stdout.readline().strip()
        assert line.startswith("promoted "), process.stderr.read()[-2000:]
        try:
            process.wait(timeout=rng.uniform(0.0, 0.5))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        assert process.returncode == -signal.SIGKILL, process.stderr.read()[-2000:]
        assert_champion_is_complete(config.workdir, set(names))
        # The record it was rewriting is complete too (atomic replace).
        record = evaluation.run_dir / "promotion.json"
        assert not record.exists() or read_json(record)["decision"]
    # The promoter did complete promotions between kills (only it writes this record).
    assert read_json(evaluation.json_path.parent / "promotion.json")["promoted"] is True


def test_publishing_leaves_staging_folders_alone_and_remove_leftovers_takes_them(registry):
    """Age tells nothing: an export's staging folder may be a day old and still be written.
    Leftovers are removed by `remove_leftovers`, which the next run calls once the workdir's
    lock says no export is alive (test_workdir.py)."""
    from inception_retrain.registry.versions import list_versions, models_dir, remove_leftovers

    config, new_version, _ = registry
    models = models_dir(config.workdir)
    models.mkdir(parents=True)
    old_staging, young_staging = models / ".staging-old", models / ".staging-young"
    old_temp = models / ".champion.json.abc.tmp"
    for folder in (old_staging, young_staging):
        folder.mkdir()
        (folder / "model.keras").write_bytes(b"partial")
    old_temp.write_text("{")
    a_day_ago = time.time() - 24 * 3600
    for path in (old_staging, old_temp):
        os.utime(path, (a_day_ago, a_day_ago))

    version = new_version({"roc_auc": 0.5})
    assert old_staging.is_dir() and young_staging.is_dir() and old_temp.is_file()
    removed = remove_leftovers(models)
    assert {path for path, _ in removed} == {old_staging, young_staging, old_temp}
    assert dict(removed)[old_staging] == len(b"partial")
    assert list_versions(models) == [version.version]
    assert (models / ".lock").exists()  # the registry's lock file stays


def test_the_champion_itself_is_not_promoted_again(registry):
    """A rerun on unchanged data trains the same head: it is not published again."""
    from inception_retrain.registry.promotion import decide_promotion

    config, new_version, new_evaluation = registry
    champion = new_version({"roc_auc": 0.7}, same_model=True)
    promote_evaluated(champion, new_evaluation({"roc_auc": 0.7}), config)

    decision = decide_promotion(new_evaluation({"roc_auc": 0.7}), config.promotion)
    assert not decision.promoted
    assert decision.reason == (
        f"the same model as the champion {champion.version} (equal fingerprints)"
    )
    other = decide_promotion(new_evaluation({"roc_auc": 0.7}), config.model_copy().promotion)
    assert other == decision  # decided from the files, every time
    # Another model with the same score is promoted as before (score >= champion's).
    challenger = new_version({"roc_auc": 0.7})
    evaluation = new_evaluation({"roc_auc": 0.7})
    document = read_json(evaluation.json_path)
    document["head"]["fingerprint"] = "another-head"
    write_json(evaluation.json_path, document)
    assert promote_evaluated(challenger, evaluation, config).promoted


def test_prune_keeps_the_champion_and_the_newest_versions(registry):
    from inception_retrain.plumbing.errors import PipelineError
    from inception_retrain.registry.versions import list_versions, models_dir, prune_versions

    config, new_version, new_evaluation = registry
    models = models_dir(config.workdir)
    versions = [new_version({"roc_auc": 0.5}).version for _ in range(5)]
    champion = versions[1]
    promote_evaluated(_version(models, champion), new_evaluation({"roc_auc": 0.5}), config)
    would = prune_versions(models, keep=2, dry_run=True)
    assert [v["version"] for v in would] == [versions[0], versions[2]]
    assert list_versions(models) == versions  # a dry run removes nothing
    removed = prune_versions(models, keep=2)
    assert [v["version"] for v in removed] == [versions[0], versions[2]]
    assert all(v["bytes"] > 0 for v in removed)
    assert list_versions(models) == [champion, versions[3], versions[4]]
    assert not list(models.glob(".trash-*"))
    assert [v["version"] for v in prune_versions(models, keep=0)] == versions[3:]
    assert list_versions(models) == [champion]

    (models / "champion.json").write_text("{ not json")
    new_version({"roc_auc": 0.5})
    with pytest.raises(PipelineError, match="champion.json is unreadable"):
        prune_versions(models, keep=0)
    assert len(list_versions(models)) == 2  # nothing removed without a known champion


def _version(models: Path, name: str) -> ModelVersion:
    return ModelVersion(
        version=name, path=models / name, promoted=False, score=None, champion_score=None
    )


# --- the champion gate: a damaged registry never lets a challenger through -------------------


def test_a_damaged_pointer_is_recovered_and_a_worse_challenger_is_still_rejected(registry):
    from inception_retrain.registry.versions import models_dir, resolve_model, write_champion

    config, new_version, new_evaluation = registry
    models = models_dir(config.workdir)
    champion = new_version({"roc_auc": 0.8})
    promote_evaluated(champion, new_evaluation({"roc_auc": 0.8}), config)

    def unreadable():
        (models / "champion.json").write_text("{ not json")

    def names_an_incomplete_version():
        broken = new_version({"roc_auc": 0.95})
        write_champion(models, {"version": broken.version})  # then it lost its model
        (broken.path / "model.keras").unlink()

    for damage in (unreadable, names_an_incomplete_version):
        damage()
        worse = new_version({"roc_auc": 0.6})
        evaluation = new_evaluation({"roc_auc": 0.6})
        result = promote_evaluated(worse, evaluation, config)
        record = read_json(evaluation.json_path.parent / "promotion.json")
        assert not result.promoted, (damage.__name__, record["reason"])
        assert "first champion" not in record["reason"]
        assert record["previous_champion"] == champion.version
        assert record["champion_score"] == pytest.approx(0.8)
        # rewritten under the registry's lock: serving finds the champion again
        assert champion_version(config.workdir) == champion.version
        assert resolve_model(config.workdir, "champion") == champion.path


def test_a_damaged_pointer_that_cannot_be_recovered_refuses_in_one_line(registry):
    from inception_retrain.registry.champion_gate import ChampionUnknownError
    from inception_retrain.registry.promotion import promote
    from inception_retrain.registry.versions import HISTORY_FILE, models_dir

    config, new_version, new_evaluation = registry
    models = models_dir(config.workdir)
    promote_evaluated(new_version({"roc_auc": 0.8}), new_evaluation({"roc_auc": 0.8}), config)
    (models / HISTORY_FILE).unlink()  # a registry from before the history, or lost
    (models / "champion.json").write_text("{ not json")
    better = new_version({"roc_auc": 0.99})
    evaluation = new_evaluation({"roc_auc": 0.99})
    with pytest.raises(ChampionUnknownError, match="refusing to promote") as refused:
        promote(better, evaluation, config.promotion, evaluation.json_path.parent)
    assert "\n" not in str(refused.value) and "champion.json is unreadable" in str(refused.value)
    assert (models / "champion.json").read_text() == "{ not json"  # nothing was promoted
    assert not (evaluation.json_path.parent / "promotion.json").exists()


def test_a_challenger_whose_score_is_undefined_is_never_promoted(registry):
    from inception_retrain.registry.promotion import decide_promotion

    config, new_version, new_evaluation = registry
    undefined = {"roc_auc": None}  # e.g. a test split with one class
    first = decide_promotion(new_evaluation(undefined), config.promotion)
    assert not first.promoted and first.score is None
    assert first.reason.startswith("its score is undefined on this test split")

    champion = new_version({"roc_auc": 0.5})
    promote_evaluated(champion, new_evaluation({"roc_auc": 0.5}), config)
    (config.workdir / "models" / "champion.json").write_text("{ not json")
    challenger = new_version(undefined)
    result = promote_evaluated(challenger, new_evaluation(undefined), config)
    assert not result.promoted
    assert champion_version(config.workdir) == champion.version
