"""Effect verdicts (C1, C4, F5, F4's uncertainty, C2's performance) where the answer is known.

End to end, on small synthetic cached features (a real Parquet cache, the sweep's real
cross-fitted trainings, 1 repeat x 5 folds):
  * random labels: nothing beats guessing, so C1, C4 and F5 are "not testable here";
  * an XOR of two input signs with an 8-unit Dense(512) stand-in: Dropout(0.5) on that narrow
    layer cripples it, so dropout after the last hidden layer only is clearly better: C1
    supported, its whole interval above 0;
  * noisy training labels with a head that memorises them: Dropout(0.5) after both layers
    shrinks the train - held-out gap without costing held-out performance: F5 supported.
Rule by rule, on hand-made out-of-fold predictions: every verdict comes out every way it can
(better / equivalent / worse / inconclusive / not testable, and supported / refuted /
inconclusive for each claim's wording), inconclusive ones say what would decide them, and
degenerate trainings are counted, not dropped.
"""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_features import splits_of, write_cache

from inception_retrain.dropout import effects, sweep
from inception_retrain.dropout.claims import (
    EFFECT,
    INCONCLUSIVE,
    NOT_TESTABLE,
    REFUTED,
    SUPPORTED,
)
from inception_retrain.dropout.evidence_spec import EvidenceSpec
from inception_retrain.dropout.sweep_plan import plan_for
from inception_retrain.dropout.sweep_summary import TrainingResult
from inception_retrain.evaluation import crossfit
from inception_retrain.training.head_spec import HeadSpec

EVIDENCE = EvidenceSpec()
END, EVERY, NONE, SEED = sweep.END_ONLY, sweep.EVERY_LAYER, sweep.NO_DROPOUT, sweep.SEED_CELL


def sweep_on(tmp_path_factory, name, x, y, splits, head, **fields):
    work = tmp_path_factory.mktemp(name) / "work"
    cache_dir, manifest = write_cache(work, x, y, splits, fingerprint=f"{name:0<16}"[:16])
    spec = sweep.SweepSpec(
        cache_dir=cache_dir,
        manifest_path=manifest,
        n_classes=2,
        feature_shape=x.shape[1:],
        head=head,
        repeats=1,
        mc_passes=0,
        order_check=False,
        **fields,
    )
    return sweep.summarize(spec, [sweep.train_cell(spec, c) for c in sweep.trainings(spec)])


def effect(findings):
    (found,) = [f for f in findings if f.kind == EFFECT]
    return found


@pytest.fixture(scope="module")
def random_labels(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2, 2, 8)).astype(np.float32)
    head = HeadSpec(hidden_units=(32, 32), learning_rate=1e-2)
    return sweep_on(
        tmp_path_factory,
        "random",
        x,
        rng.integers(0, 2, 300),
        splits_of(200, 40, 60),
        head,
        batch_size=32,
        epochs=6,
    )


def test_random_labels_are_not_testable(random_labels):
    s = random_labels
    assert not any(c.beats_majority for c in s.configs)
    for findings in (
        effects.judge_c1(s, EVIDENCE),
        effects.judge_c4(s, EVIDENCE),
        effects.judge_f5(s, EVIDENCE),
    ):
        found = effect(findings)
        assert found.verdict == NOT_TESTABLE, (found.claim, found.reason)
        assert all(c.verdict == crossfit.NOT_TESTABLE for c in found.comparisons)
        assert "does not beat guessing" in found.reason


@pytest.fixture(scope="module")
def xor(tmp_path_factory):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(640, 1, 1, 4)).astype(np.float32)
    y = ((x[:, 0, 0, 0] > 0) ^ (x[:, 0, 0, 1] > 0)).astype(int)
    head = HeadSpec(hidden_units=(8, 16), learning_rate=3e-2)
    return sweep_on(
        tmp_path_factory, "xor", x, y, splits_of(400, 80, 160), head, batch_size=64, epochs=10
    )


def test_c1_follows_a_placement_that_clearly_wins(xor):
    found = effect(effects.judge_c1(xor, EVIDENCE, (8, 16)))
    main = found.comparisons[0]
    assert main.deciding and main.metric == "brier" and main.images == 480
    assert main.b == "Dropout(0.5) after Dense(16)" and main.a.endswith("after both Dense layers")
    assert main.low > 0 and main.verdict == crossfit.BETTER  # end only clearly better
    assert found.verdict == SUPPORTED
    assert "Inconclusive if the 95% CI's lower end" in found.flip
    assert [c.metric for c in found.comparisons[:3]] == ["brier", "accuracy", "log_loss"]


@pytest.fixture(scope="module")
def noisy_labels(tmp_path_factory):
    rng = np.random.default_rng(9)
    n = 480
    x = rng.normal(size=(n, 2, 2, 8)).astype(np.float32)
    clean = (x[:, 0, 0, :2].sum(axis=1) > 0).astype(int)
    y = np.where(rng.random(n) < 0.3, 1 - clean, clean)
    head = HeadSpec(
        hidden_units=(128, 32), learning_rate=1e-2, dropout_rate=0.5, dropout_placement="after_both"
    )
    return sweep_on(
        tmp_path_factory, "noisy", x, y, splits_of(360, 60, 60), head, batch_size=32, epochs=12
    )


def test_f5_supported_where_dropout_clearly_reduces_overfitting(noisy_labels):
    s = noisy_labels
    none, both = s.config(*NONE), s.config(0.5, "after_both")
    assert none.train_accuracy > 0.9  # the head without dropout memorised the noise
    found = effect(effects.judge_f5(s, EVIDENCE, cell=(0.5, "after_both")))
    gap, score = found.comparisons[:2]
    assert gap.metric == "gap" and gap.low > EVIDENCE.accuracy_margin  # smaller by > margin
    assert score.verdict in (crossfit.BETTER, crossfit.EQUIVALENT), score
    assert found.verdict == SUPPORTED
    assert both.gap < none.gap


# --- the rules on hand-made out-of-fold predictions -----------------------------------


N = 300
LABELS = np.random.default_rng(5).permutation(np.arange(N) % 5 < 2).astype(int)
PLAN = plan_for(
    [f"{i:04d}" for i in range(N)], LABELS.tolist(), folds=5, repeats=2, max_images=None
)


def hand_made(per_cell: dict, train_accuracy=None, mc=None, order_check=None, degenerate=()):
    """A sweep summary from {cell: (R, N) probability of each image's true class}.

    `train_accuracy`: {cell: value} (default 1.0); `mc`: (R, N) MC-dropout std of the tested
    cell (the seed's); `order_check`: (R, N) true-class probability of the seed's config with
    its Dropout before the ReLU (repeat 0, fold 0 used); `degenerate`: cells whose first
    training predicts one class."""
    labels = np.asarray(PLAN.labels)
    folds = PLAN.fold_array()

    def result(cell, repeat, fold, p_true, order="after"):
        held = np.flatnonzero(folds[repeat] == fold)
        p1 = np.where(labels[held] == 1, p_true[repeat, held], 1 - p_true[repeat, held])
        if cell in degenerate and (repeat, fold) == (0, 0):
            p1 = np.full(len(held), 0.4)  # one class for every held-out image
        return TrainingResult(
            rate=cell[0],
            placement=cell[1],
            order=order,
            repeat=repeat,
            fold=fold,
            seed=repeat * 5 + fold,
            dropout_layers=0,
            epochs_run=3,
            history={"val_accuracy": [0.5, 0.6, 0.7]},
            held_out=held.tolist(),
            probabilities=np.stack([1 - p1, p1], axis=1).tolist(),
            mc_std=mc[repeat, held].tolist() if mc is not None and cell == SEED else None,
            train_accuracy=(train_accuracy or {}).get(cell, 1.0),
            n_train=N - len(held),
            seconds=1.0,
        )

    results = [
        result(cell, r, k, np.asarray(p))
        for cell, p in per_cell.items()
        for r in range(2)
        for k in range(5)
    ]
    if order_check is not None:
        results.append(result(SEED, 0, 0, np.asarray(order_check), order="before"))
    spec = sweep.SweepSpec(
        cache_dir="/c",
        manifest_path="/m",
        n_classes=2,
        feature_shape=(2, 2, 8),
        mc_passes=5 if mc is not None else 0,
    )
    return sweep.summarize_plan(spec, PLAN, results)


def p_true(accuracy, spread=0.15, seed=0):
    """(2, N) true-class probabilities: right with probability `accuracy`, confidence varied."""
    rng = np.random.default_rng(seed)
    right = rng.random((2, N)) < accuracy
    confidence = np.clip(0.8 + spread * rng.standard_normal((2, N)), 0.51, 0.999)
    return np.where(right, confidence, 1 - confidence)


BASE = {NONE: p_true(0.9, seed=1), SEED: p_true(0.9, seed=2)}


@pytest.mark.parametrize(
    ("end_only", "every_layer", "engine", "verdict"),
    [
        (p_true(0.95, seed=3), p_true(0.70, seed=4), crossfit.BETTER, SUPPORTED),
        (p_true(0.90, seed=3), p_true(0.90, seed=3), crossfit.EQUIVALENT, SUPPORTED),
        (p_true(0.70, seed=3), p_true(0.95, seed=4), crossfit.WORSE, REFUTED),
        (p_true(0.90, 0.4, seed=3), p_true(0.86, 0.4, seed=4), crossfit.INCONCLUSIVE, INCONCLUSIVE),
    ],
)
def test_c1_verdict_follows_the_paired_interval(end_only, every_layer, engine, verdict):
    s = hand_made({**BASE, END: end_only, EVERY: every_layer})
    found = effect(effects.judge_c1(s, EVIDENCE))
    main = found.comparisons[0]
    assert (main.verdict, found.verdict) == (engine, verdict), main
    assert -1 <= main.low <= main.high <= 1
    if engine == crossfit.INCONCLUSIVE:
        assert main.min_detectable > 0 and main.images_needed > N
        assert f"about {main.images_needed} images" in found.reason
    if engine == crossfit.EQUIVALENT:
        assert main.low == main.high == 0.0 and "Not equivalent if" in found.flip


def test_equivalent_wins_over_better_and_keeps_the_direction():
    slightly = BASE[SEED].copy()
    slightly[:, :60] = np.clip(slightly[:, :60] + 0.05, 0, 0.999)  # a little better, everywhere
    s = hand_made({**BASE, END: slightly, EVERY: BASE[SEED]})
    main = effect(effects.judge_c1(s, EVIDENCE)).comparisons[0]
    assert main.verdict == crossfit.EQUIVALENT and main.direction == crossfit.B_BETTER
    assert main.low > 0 and main.high < EVIDENCE.brier_margin


def test_nothing_beating_guessing_makes_every_effect_not_testable():
    one_class = np.broadcast_to(np.where(LABELS == 1, 0.4, 0.6), (2, N))  # always class 0
    chance = {cell: one_class for cell in (NONE, SEED, END, EVERY)}
    s = hand_made(chance)
    assert not any(c.beats_majority for c in s.configs) and s.degenerate == 40
    for findings in (
        effects.judge_c1(s, EVIDENCE),
        effects.judge_c4(s, EVIDENCE),
        effects.judge_f5(s, EVIDENCE),
    ):
        assert effect(findings).verdict == NOT_TESTABLE


@pytest.mark.parametrize(
    ("every_layer", "verdict"),
    [
        (p_true(0.9, seed=2), SUPPORTED),  # equivalent to every other config
        (p_true(0.6, seed=9), REFUTED),  # clearly worse than all of them
        (p_true(0.9, 0.45, seed=9), INCONCLUSIVE),
    ],
)
def test_c4_is_compared_with_every_other_config(every_layer, verdict):
    s = hand_made({**BASE, END: p_true(0.9, seed=2), EVERY: every_layer})
    found = effect(effects.judge_c4(s, EVIDENCE))
    assert found.verdict == verdict, found.reason
    assert {c.a for c in found.comparisons} == {
        "no dropout",
        "Dropout(0.2) after Dense(1024)",
        "Dropout(0.5) after Dense(1024)",
    }
    assert set(found.numbers["holm_adjusted_p"]) == {c.a for c in found.comparisons}


def test_f5_needs_a_smaller_gap_and_no_loss():
    same = BASE[NONE]
    shrinks = hand_made(
        {NONE: same, SEED: same, END: same, EVERY: same}, train_accuracy={NONE: 1.0, SEED: 0.9}
    )
    found = effect(effects.judge_f5(shrinks, EVIDENCE))
    gap = found.comparisons[0]
    assert gap.verdict == crossfit.BETTER and gap.difference == pytest.approx(0.1)
    assert found.verdict == SUPPORTED
    tie = hand_made({NONE: same, SEED: same, END: same, EVERY: same})
    found = effect(effects.judge_f5(tie, EVIDENCE))
    assert found.comparisons[0].verdict == crossfit.EQUIVALENT  # a tie never supports it
    assert found.verdict == REFUTED and "gap shrinks with dropout: equivalent" in found.reason
    costly = hand_made(
        {NONE: same, SEED: p_true(0.6, seed=7), END: same, EVERY: same},
        train_accuracy={NONE: 1.0, SEED: 0.5},
    )
    found = effect(effects.judge_f5(costly, EVIDENCE))
    assert found.comparisons[1].verdict == crossfit.WORSE and found.verdict == REFUTED
    noisy = hand_made(
        {NONE: same, SEED: p_true(0.88, 0.45, seed=8), END: same, EVERY: same},
        train_accuracy={NONE: 1.0, SEED: 0.9},
    )
    assert effect(effects.judge_f5(noisy, EVIDENCE)).verdict == INCONCLUSIVE


def test_degenerate_trainings_are_kept_and_counted():
    s = hand_made(
        {**BASE, END: p_true(0.9, seed=2), EVERY: p_true(0.9, seed=2)}, degenerate=[EVERY]
    )
    assert s.config(*EVERY).degenerate == 1 and s.degenerate == 1
    main = effect(effects.judge_c1(s, EVIDENCE)).comparisons[0]
    assert main.degenerate_pairs == 1 and main.lost_pairs == 0 and main.images == N


def errors_of(probability):
    return (probability < 0.5).astype(float)


@pytest.mark.parametrize(("signal", "verdict"), [(3.0, SUPPORTED), (0.0, REFUTED)])
def test_f4_must_beat_the_plain_confidence(signal, verdict):
    seed = p_true(0.8, seed=11)  # 20% errors: enough in every fold
    confidence = np.abs(seed - 0.5)
    rng = np.random.default_rng(12)
    # MC std: follows the plain confidence (no better than it), plus a signal on the errors
    mc = (
        (0.5 - confidence)
        + signal * errors_of(seed) * rng.random((2, N))
        + 0.01 * rng.random((2, N))
    )
    s = hand_made({**BASE, SEED: seed, END: seed, EVERY: seed}, mc=mc)
    found = effects.judge_f4_uncertainty(s, EVIDENCE)
    assert found.verdict == verdict, found.reason
    c = found.comparisons[0]
    assert c.b == "MC-dropout std" and c.a == "1 - confidence"
    if verdict == REFUTED:
        assert c.verdict == crossfit.EQUIVALENT  # no better than the baseline


def test_f4_with_too_few_errors_is_not_testable():
    almost_right = p_true(0.995, seed=13)
    s = hand_made({**BASE, SEED: almost_right}, mc=np.zeros((2, N)))
    found = effects.judge_f4_uncertainty(s, EVIDENCE)
    assert found.verdict == NOT_TESTABLE and "too few errors" in found.reason
    without = hand_made(BASE)
    assert effects.judge_f4_uncertainty(without, EVIDENCE).verdict == NOT_TESTABLE


def test_c2_orders_are_no_different_only_when_they_train_alike():
    same = hand_made({**BASE, END: BASE[SEED], EVERY: BASE[SEED]}, order_check=BASE[SEED])
    found = effects.judge_c2_performance(same, EVIDENCE)
    assert found.verdict == SUPPORTED and found.numbers["identical_predictions"]
    c = found.comparisons[0]
    assert c.design == "one split" and "variance between training seeds" in c.note
    other = hand_made(
        {**BASE, END: BASE[SEED], EVERY: BASE[SEED]}, order_check=p_true(0.55, seed=3)
    )
    assert effects.judge_c2_performance(other, EVIDENCE).verdict == REFUTED
    assert effects.judge_c2_performance(hand_made(BASE), EVIDENCE).verdict == NOT_TESTABLE
