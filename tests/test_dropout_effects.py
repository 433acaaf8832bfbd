"""Effect verdicts (C1, C4, F5) on data where the answer is known.

End to end, on small synthetic cached features (real Parquet cache, real trainings of the
sweep, 5 seeds, the claims grid):
  * random labels: nothing beats guessing, so C1, C4 and F5 are inconclusive (today a folder of
    real images with labels dealt at random gave "supported");
  * an XOR of two input signs with a 8-unit Dense(512) stand-in: Dropout(0.5) on that narrow
    layer cripples it, so dropout after the last hidden layer only clearly wins and C1 is
    supported with its whole interval above the margin;
  * noisy training labels (35% flipped, clean validation and test labels), early stopping off
    so the head without dropout memorises them: the run's own head, Dropout(0.5) after both
    Dense layers, clearly shrinks the train - test gap without costing accuracy: F5 supported.
Rule by rule, on hand-made per-seed results: the verdict follows the numbers both ways, a
tie never counts, degenerate trainings are left out of the pairs, and C4 picks its best
config on validation and judges it on test.
"""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_features import splits_of, write_cache

from inception_retrain.dropout import effects, sweep
from inception_retrain.dropout.claims import EFFECT, INCONCLUSIVE, REFUTED, SUPPORTED
from inception_retrain.dropout.sweep_summary import SplitScore, TrainingResult
from inception_retrain.evaluation import statistics
from inception_retrain.training.head_spec import HeadSpec

MARGIN = 0.05


def sweep_on(tmp_path_factory, name, x, y, splits, head, **fields):
    work = tmp_path_factory.mktemp(name) / "work"
    cache_dir, manifest = write_cache(work, x, y, splits, fingerprint=f"{name:0<16}"[:16])
    spec = sweep.SweepSpec(
        cache_dir=cache_dir,
        manifest_path=manifest,
        n_classes=2,
        feature_shape=x.shape[1:],
        head=head,
        **fields,
    )
    return sweep.summarize(spec, [sweep.train_cell(spec, c) for c in sweep.trainings(spec)])


def effect(findings):
    (found,) = [f for f in findings if f.kind == EFFECT]
    return found


@pytest.fixture(scope="module")
def random_labels(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(392, 2, 2, 8)).astype(np.float32)
    head = HeadSpec(hidden_units=(32, 32), learning_rate=1e-2)
    return sweep_on(
        tmp_path_factory,
        "random",
        x,
        rng.integers(0, 2, 392),
        splits_of(128, 64, 200),
        head,
        batch_size=32,
        epochs=8,
        patience=2,
    )


def test_random_labels_decide_nothing(random_labels):
    s = random_labels
    for findings in (
        effects.judge_c1(s, MARGIN),
        effects.judge_c4(s, MARGIN),
        effects.judge_f5(s, MARGIN),
    ):
        found = effect(findings)
        assert found.verdict == INCONCLUSIVE, (found.claim, found.reason)
        deciding = [c for c in found.comparisons if c.deciding]
        assert all("majority class" in c.blocked or "degenerate" in c.blocked for c in deciding)
    assert not any(c.beats_majority for c in s.configs)


@pytest.fixture(scope="module")
def xor(tmp_path_factory):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(896, 1, 1, 4)).astype(np.float32)
    y = ((x[:, 0, 0, 0] > 0) ^ (x[:, 0, 0, 1] > 0)).astype(int)
    head = HeadSpec(hidden_units=(8, 16), learning_rate=3e-2)
    return sweep_on(
        tmp_path_factory,
        "xor",
        x,
        y,
        splits_of(512, 128, 256),
        head,
        batch_size=64,
        epochs=10,
        patience=3,
    )


def test_c1_follows_a_placement_that_clearly_wins(xor):
    found = effect(effects.judge_c1(xor, MARGIN, (8, 16)))
    (main,) = [c for c in found.comparisons if c.deciding]
    assert main.a == "Dropout(0.5) after Dense(16)" and main.b.endswith("after both Dense layers")
    assert main.low > 0  # end only clearly wins: not a tie, the whole interval above 0
    assert found.verdict == SUPPORTED and not main.blocked and main.n == 5
    assert "refuted if its upper end" in found.flip


@pytest.fixture(scope="module")
def noisy_labels(tmp_path_factory):
    rng = np.random.default_rng(9)
    n = 256 + 128 + 256
    x = rng.normal(size=(n, 2, 2, 8)).astype(np.float32)
    clean = (x[:, 0, 0, :2].sum(axis=1) > 0).astype(int)
    flipped = np.where(rng.random(n) < 0.35, 1 - clean, clean)
    y = np.concatenate([flipped[:256], clean[256:]])  # noise in the training labels only
    head = HeadSpec(
        hidden_units=(128, 32), learning_rate=1e-2, dropout_rate=0.5, dropout_placement="after_both"
    )
    return sweep_on(
        tmp_path_factory,
        "noisy",
        x,
        y,
        splits_of(256, 128, 256),
        head,
        batch_size=32,
        epochs=12,
        patience=0,
    )


def test_f5_supported_where_dropout_clearly_reduces_overfitting(noisy_labels):
    s = noisy_labels
    none, both = s.config(0.0, "none"), s.config(0.5, "after_both")
    assert none.train_accuracy.mean > 0.95  # the head without dropout memorised the noise
    found = effect(effects.judge_f5(s, MARGIN, cell=(0.5, "after_both")))
    gap, accuracy = found.comparisons
    assert gap.low > 0 and accuracy.low > -MARGIN, (gap, accuracy)
    assert found.verdict == SUPPORTED
    assert both.gap_accuracy.mean < none.gap_accuracy.mean


# --- the rules on hand-made results ---------------------------------------------------


def score(accuracy: float, n: int = 100, one_class: bool = False) -> SplitScore:
    correct = round(accuracy * n)
    predicted = [n, 0] if one_class else [n // 2, n - n // 2]
    return SplitScore(
        n=n,
        accuracy=correct / n,
        loss=0.5,
        majority_accuracy=0.5,
        predicted=predicted,
        correct="1" * correct + "0" * (n - correct),
    )


def result(cell, seed, test, validation=None, train=None, degenerate=False) -> TrainingResult:
    validation = test if validation is None else validation
    return TrainingResult(
        rate=cell[0],
        placement=cell[1],
        seed=seed,
        dropout_layers=0,
        epochs_run=5,
        best_epoch=3,
        stopped_early=True,
        history={},
        seconds=1.0,
        scores={
            "train": score(test if train is None else train),
            "validation": score(validation, one_class=degenerate),
            "test": score(test),
        },
    )


def summary_of(per_cell: dict, degenerate: dict | None = None):
    """A sweep summary from {cell: [test accuracy per seed]} (or (test, validation, train));
    `degenerate` maps a cell to the seeds whose training predicts one class."""
    results = []
    for cell, values in per_cell.items():
        for seed, value in enumerate(values):
            value = value if isinstance(value, tuple) else (value,)
            bad = seed in (degenerate or {}).get(cell, ())
            results.append(result(cell, seed, *value, degenerate=bad))
    spec = sweep.SweepSpec(cache_dir="/c", manifest_path="/m", n_classes=2, feature_shape=(2, 2, 8))
    return sweep.summarize(spec, results)


END, EVERY, NONE, SEED = sweep.END_ONLY, sweep.EVERY_LAYER, sweep.NO_DROPOUT, sweep.SEED_CELL


@pytest.mark.parametrize(
    ("end_only", "every_layer", "verdict"),
    [
        ([0.90, 0.91, 0.90, 0.92, 0.91], [0.80, 0.82, 0.80, 0.81, 0.80], SUPPORTED),
        ([0.80, 0.81, 0.80, 0.80, 0.82], [0.80, 0.81, 0.80, 0.80, 0.82], SUPPORTED),  # equivalent
        ([0.70, 0.71, 0.72, 0.70, 0.70], [0.90, 0.91, 0.90, 0.92, 0.90], REFUTED),
        ([0.90, 0.70, 0.85, 0.65, 0.80], [0.70, 0.90, 0.65, 0.85, 0.80], INCONCLUSIVE),
    ],
)
def test_c1_verdict_follows_the_paired_interval(end_only, every_layer, verdict):
    s = summary_of({NONE: [0.8] * 5, SEED: [0.8] * 5, END: end_only, EVERY: every_layer})
    found = effect(effects.judge_c1(s, MARGIN))
    assert found.verdict == verdict, found.comparisons


def test_degenerate_trainings_are_left_out_of_the_pairs():
    values = [0.90, 0.91, 0.90, 0.92, 0.91]
    s = summary_of(
        {NONE: [0.8] * 5, SEED: [0.8] * 5, END: values, EVERY: [0.6] * 5},
        degenerate={EVERY: {1, 3}},
    )
    assert s.config(*EVERY).degenerate == 2 and s.degenerate == 2
    (main,) = [c for c in effect(effects.judge_c1(s, MARGIN)).comparisons if c.deciding]
    assert main.excluded == [1, 3] and main.n == 3 and main.outcome == statistics.HOLDS
    s = summary_of(
        {NONE: [0.8] * 5, SEED: [0.8] * 5, END: values, EVERY: [0.6] * 5},
        degenerate={EVERY: {0, 1, 2}},
    )
    found = effect(effects.judge_c1(s, MARGIN))
    assert found.verdict == INCONCLUSIVE and "2 seed pair(s)" in found.reason


def test_c4_picks_the_best_on_validation_and_judges_it_on_test():
    # no dropout is the best other config on validation, but worse on test
    s = summary_of(
        {
            NONE: [(0.70, 0.95)] * 5,
            SEED: [(0.85, 0.80)] * 5,
            END: [(0.86, 0.80)] * 5,
            EVERY: [(0.85, 0.80)] * 5,
        }
    )
    found = effect(effects.judge_c4(s, MARGIN))
    assert found.numbers["best_other"] == "no dropout"
    assert found.comparisons[0].mean == pytest.approx(0.15) and found.verdict == SUPPORTED


def test_f5_refuted_when_the_gap_grows_and_a_tie_never_supports_it():
    grows = summary_of(
        {
            NONE: [(0.80, 0.80, 0.85)] * 5,
            SEED: [(0.80, 0.80, 0.95)] * 5,
            END: [0.8] * 5,
            EVERY: [0.8] * 5,
        }
    )
    found = effect(effects.judge_f5(grows, MARGIN))
    assert found.verdict == REFUTED and "gap shrinks with dropout" in found.reason
    tie = summary_of(
        {
            NONE: [(0.80, 0.80, 0.90)] * 5,
            SEED: [(0.80, 0.80, 0.90)] * 5,
            END: [0.8] * 5,
            EVERY: [0.8] * 5,
        }
    )
    assert effect(effects.judge_f5(tie, MARGIN)).verdict == INCONCLUSIVE


def test_a_config_that_does_not_beat_guessing_cannot_decide():
    s = summary_of(
        {
            NONE: [0.8] * 5,
            SEED: [0.8] * 5,
            END: [0.52, 0.5, 0.51, 0.52, 0.5],
            EVERY: [0.40, 0.41, 0.40, 0.42, 0.40],
        }
    )
    found = effect(effects.judge_c1(s, MARGIN))
    assert found.verdict == INCONCLUSIVE and "majority class" in found.reason


@pytest.mark.parametrize(("signal", "verdict"), [(2.0, SUPPORTED), (-2.0, REFUTED), (0.0, None)])
def test_f4_uncertainty_against_errors_with_its_baseline(signal, verdict):
    from types import SimpleNamespace

    from inception_retrain.dropout.claims import NOT_TESTABLE

    rng = np.random.default_rng(4)
    errors = rng.random(120) < 0.25
    spread = rng.normal(size=120) + signal * errors  # MC std, higher for errors when signal > 0
    confidence = rng.normal(size=120)  # the baseline carries nothing here

    def inference(err, std):
        return SimpleNamespace(
            errors=int(err.sum()),
            images=len(err),
            uncertainty=statistics.auroc_test(err, std),
            baseline=statistics.auroc_test(err, confidence[: len(err)]),
            difference=statistics.auroc_difference(err, std, confidence[: len(err)]),
        )

    found = effects.judge_f4_uncertainty(inference(errors, spread))
    if verdict is not None:
        assert found.verdict == verdict
    else:  # no signal: not supported (the permutation test false-alarms 5% of the time)
        assert found.verdict in (INCONCLUSIVE, REFUTED)
    if signal > 0:
        assert found.numbers["mc_minus_baseline_ci_low"] > 0  # better than the baseline
    one_error = np.zeros(40, bool)
    one_error[3] = True
    assert effects.judge_f4_uncertainty(inference(one_error, spread[:40])).verdict == NOT_TESTABLE
