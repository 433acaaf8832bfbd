"""Augmented views from the user's side: the options, the statistics of the paired effect, and
`inception-retrain run --augment-views 4` end to end (the real CLI in a subprocess, embedded
Prefect, the real InceptionV3 with random weights at 75 px, a 16-16 head).

What they check: nested config models become readable options (`--augment-rotation-degrees`)
with one-line errors, and deployment parameters carry them as a nested object; the effect's
decision rule says better, worse or inconclusive on per-seed values built so that the answer
is known, with the sign of lower-is-better metrics turned; a run with views caches
N x (K + 1) train rows, trains on them, and its evaluation report shows the paired effect over
5 seeds with 95% intervals, its training with views at the run's seed being the run's own head.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from prefect_fixtures import child_env, tail

from inception_retrain.cli.main import deployment_overrides as overrides_of
from inception_retrain.cli.options import OPTION_FIELDS, UsageError, config_from_options
from inception_retrain.config import RetrainConfig
from inception_retrain.data.manifest import read_image_rows
from inception_retrain.evaluation.augmentation_effect import compare
from inception_retrain.evaluation.statistics import FAILS, HOLDS, INCONCLUSIVE
from inception_retrain.features.augmentation import AugmentPolicy
from inception_retrain.flows.deployments import nightly_parameters

BIN = Path(sys.executable).parent
K = 4
SMALL_RUN = [
    "--image-size",
    "75",
    "--hidden-units",
    "16,16",
    "--epochs",
    "2",
    "--batch-size",
    "8",
    "--split-fractions",
    "0.5,0.2,0.3",
    "--sweep-rates",
    "0",
    "--sweep-placements",
    "none",
    "--sweep-folds",
    "2",
    "--sweep-repeats",
    "1",
    "--sweep-epochs",
    "1",
]


def test_nested_models_are_options_with_readable_names_and_one_line_errors():
    names = {name for name in OPTION_FIELDS if name.startswith("augment")}
    assert names == {"augment_views", "augment_seeds"} | {
        f"augment_{key}" for key in AugmentPolicy.model_fields
    }
    assert "dropout_rate" in OPTION_FIELDS and "head_dropout_rate" not in OPTION_FIELDS
    config = config_from_options(
        {
            "augment_views": "4",
            "augment_rotation_degrees": "10",
            "augment_horizontal_flip": "no",
            "dropout_rate": "0.5",
        }
    )
    assert config.augment_views == 4 and config.head.dropout_rate == 0.5
    assert config.augment == AugmentPolicy(rotation_degrees=10, horizontal_flip=False)
    assert RetrainConfig().augment_views == 0  # today's behaviour by default
    with pytest.raises(UsageError, match="^--augment-rotation-degrees: .*180, got '400'$"):
        config_from_options({"augment_rotation_degrees": "400"})
    with pytest.raises(UsageError, match="^--augment-views: .*less than or equal to 32"):
        config_from_options({"augment_views": "33"})
    options = {"augment_zoom": "0.3", "hidden_units": "8,8", "epochs": "2"}
    overrides = overrides_of(config_from_options(options), options)
    assert set(overrides) == {"augment", "head", "epochs"}
    deployed = RetrainConfig.model_validate(nightly_parameters(overrides)["config"])
    assert deployed.augment.zoom == 0.3 and deployed.head.hidden_units == (8, 8)
    assert deployed.augment.rotation_degrees == AugmentPolicy().rotation_degrees


def test_the_decision_rule_on_per_seed_values_with_known_answers():
    seeds = [0, 1, 2, 3, 4]
    base = {s: 0.70 + 0.01 * s for s in seeds}
    better = {s: base[s] + 0.05 + 0.002 * (-1) ** s for s in seeds}  # +0.05, little noise
    noisy = {s: base[s] + (0.04 if s % 2 else -0.04) for s in seeds}  # no consistent effect
    up = compare("accuracy", "higher", "", seeds, base, better)
    assert up.verdict == HOLDS and up.low > 0 and up.improvement == pytest.approx(0.05, abs=0.01)
    assert compare("accuracy", "higher", "", seeds, better, base).verdict == FAILS
    assert compare("accuracy", "higher", "", seeds, base, noisy).verdict == INCONCLUSIVE
    # a lower-is-better metric: the same numbers mean the views made it worse
    down = compare("log_loss", "lower", "", seeds, base, better)
    assert down.verdict == FAILS and down.improvement == pytest.approx(-0.05, abs=0.01)
    assert compare("ece", "lower", "", seeds, better, base).verdict == HOLDS
    assert compare("accuracy", "higher", "", [0], base, better).verdict == INCONCLUSIVE


@pytest.mark.slow
@pytest.mark.extended  # a whole run (about a minute); test_augmentation_views is the default's
def test_run_with_augment_views_end_to_end(small_demo_dir, tmp_path):
    workdir = tmp_path / "work"
    arguments = ["--data", str(small_demo_dir), "--workdir", str(workdir), *SMALL_RUN]
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        done = subprocess.run(
            [str(BIN / "inception-retrain"), "run", *arguments, "--augment-views", str(K)],
            stdout=subprocess.PIPE,
            stderr=out,
            timeout=420,
            cwd=tmp_path,
            env=child_env(PREFECT_HOME=str(tmp_path / "prefect")),
        )
    assert done.returncode == 0, tail(log, 60)
    run_dir = Path(done.stdout.decode().strip().splitlines()[-1])
    n_train = len(read_image_rows(run_dir / "manifest.parquet", "train"))
    extract = json.loads((run_dir / "extract.json").read_text())
    assert extract["views"]["computed"] == extract["views"]["cached_rows"] == n_train * K
    history = json.loads((run_dir / "history.json").read_text())
    assert history["n_train_view_rows"] == n_train * K and history["data_mode"] == "in-memory"

    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    effect = evaluation["augmentation"]
    assert effect["views"] == K and effect["seeds"] == [0, 1, 2, 3, 4]
    assert [m["metric"] for m in effect["metrics"]] == ["accuracy", "log_loss", "ece", "gap"]
    assert [m["metric"] for m in effect["overfitting"]] == [
        "gap: dropout",
        "gap: views",
        "gap: views vs dropout",
        "gap: both vs views",
    ]
    for metric in effect["metrics"] + effect["overfitting"]:
        assert metric["verdict"] in (HOLDS, FAILS, INCONCLUSIVE)
        assert len(metric["reference"]) == len(metric["compared"]) == 5
        if metric["low"] is not None:
            assert metric["low"] <= metric["improvement"] <= metric["high"]
    trained = [(t["views"], t["dropout"], t["seed"]) for t in effect["trainings"]]
    assert sorted(trained) == sorted(
        (views, dropout, seed) for views in (0, K) for dropout in (False, True) for seed in range(5)
    )
    own = next(
        t for t in effect["trainings"] if (t["views"], t["dropout"], t["seed"]) == (K, True, 0)
    )
    # the same training: the evaluation scores the saved head, whose Dense(512) has the
    # standardisation folded in, so the two agree to float32 rounding, not bit for bit
    assert own["scores"]["log_loss"] == pytest.approx(evaluation["metrics"]["log_loss"], abs=1e-6)
    assert own["scores"]["ece"] == pytest.approx(evaluation["metrics"]["ece"], abs=1e-6)

    markdown = (run_dir / "evaluation.md").read_text()
    assert "## Augmented views" in markdown
    assert f"| {K} views per image raise the test accuracy | without views: " in markdown
    assert f"| {K} views shrink the gap more than dropout | dropout, 0 views: " in markdown
    html = (run_dir / "evaluation.html").read_text()
    assert 'id="augmented-views"' in html and "improvement [95% CI]" in html
