"""The effect verdicts' calibration, with known answers, on real tiny trainings.

Each repetition draws a fresh labelled set of the demo's size (358 train + validation
images), cross-fits it 2x5 as the sweep does (`tests/evidence_sim.py`: the product's fold
assignment, paired seeds, a fixed 15-epoch budget) with tiny heads trained in NumPy the way
Keras trains the real one (`tests/tiny_heads.py`), and asks `evaluation.crossfit` for its
verdict. Because every repetition trains anew on new data, the variance between training
sets, which the corrected resampled t is about, is in the calibration.

  * A/A: the same config with another seed must give "better" or "worse" (its 95% interval
    excluding 0) at most 7.5% of the time; so must A/A', equally good configs that disagree
    image by image; the naive pooled test, shown beside it, does not hold its level;
  * planted effects: config B reads a stronger signal of the same images; "better" in at
    least 80% of repetitions at a true accuracy difference of 0.08 (power curve 0.02-0.10);
  * truly equal configs at the demo's accuracy (~0.93) come out "equivalent";
  * random labels: no config beats the majority class (family-wise, Holm), and every effect
    verdict is "not testable".
The default suite runs a small, deterministic version (30 repetitions, seconds); the full one
(200 repetitions per scenario, minutes) is marked `extended` and prints every rate with its
Wilson interval: `pytest -m extended -s tests/test_evidence_calibration.py` (docs/evidence.md
records them).
"""

from __future__ import annotations

import evidence_sim as sim
import numpy as np
import pytest

from inception_retrain.evaluation import crossfit

MARGINS = {"accuracy": 0.05, "brier": 0.034, "log_loss": 0.10}
DIRECTIONAL = (crossfit.B_BETTER, crossfit.B_WORSE)


def verdicts(runs, pair, metric):
    results = [runs.compare(t, *pair, metric, MARGINS[metric]) for t in range(len(runs.labels))]
    return [r.verdict for r in results], [r.direction for r in results]


def naive_excludes_zero(runs, pair, metric) -> int:
    """How often the naive test (every (repeat, image) difference independent) excludes 0."""
    count = 0
    for t in range(len(runs.labels)):
        a, b = (runs.outcomes(t, c, metric) for c in pair)
        d = (b - a) if metric == "accuracy" else (a - b)
        se = d.std(ddof=1) / np.sqrt(d.size)
        count += abs(d.mean()) > 1.96 * se
    return count


def null_runs(seed, reps, accuracy):
    """Configs: 0 = A, 1 = A with another seed, 2 = A on equally good other features."""
    rng = np.random.default_rng(seed)
    mu = sim.mu_for(accuracy)
    configs = [sim.Config(0, 0), sim.Config(0, 1), sim.Config(1, 0)]
    return sim.crossfit_runs(rng, reps, [mu, mu], configs, corr=[1.0, 0.5])


def planted_runs(seed, reps, deltas, population=0):
    """Config 0 at true accuracy 0.80; config j reads the same images' stronger signal."""
    rng = np.random.default_rng(seed)
    mus = [sim.mu_for(0.80)] + [sim.mu_for(0.80 + d) for d in deltas]
    configs = [sim.Config(view) for view in range(len(mus))]
    return sim.crossfit_runs(rng, reps, mus, configs, population=population)


def random_label_runs(seed, reps):
    rng = np.random.default_rng(seed)
    configs = [sim.Config(0, 0, 0.0, 0.0), sim.Config(0, 0, 0.0, 0.5), sim.Config(0, 0, 0.5, 0.5)]
    return sim.crossfit_runs(rng, reps, [sim.mu_for(0.93)], configs, random_labels=True)


def gate_and_verdicts(runs, pairs=((0, 1), (0, 2), (1, 2))):
    """Per repetition: (does some config beat the majority (Holm), its gated verdicts)."""
    out = []
    for t in range(len(runs.labels)):
        correct = {f"config {c}": runs.outcomes(t, c, "accuracy") for c in range(runs.z.shape[1])}
        checks = crossfit.beats_majority(correct, runs.labels[t].astype(int), runs.folds[t])
        gated = [
            crossfit.gate(runs.compare(t, a, b, metric, MARGINS[metric]), checks).verdict
            for a, b in pairs
            for metric in MARGINS
        ]
        out.append((any(check.beats for check in checks), gated))
    return out


# --- the default suite: small and deterministic ----------------------------------------


@pytest.fixture(scope="module")
def quick_null():
    return null_runs(seed=11, reps=30, accuracy=0.93)


def test_identical_configs_rarely_differ_and_come_out_equivalent(quick_null):
    for metric in ("accuracy", "brier"):
        found, directions = verdicts(quick_null, (0, 1), metric)
        wrong = sum(d in DIRECTIONAL for d in directions)
        assert wrong <= 2, (metric, sim.rate_text(wrong, 30))  # nominal 5%: 1.5 expected at most
    brier, _ = verdicts(quick_null, (0, 1), "brier")
    assert brier.count(crossfit.EQUIVALENT) >= 27  # truly equal at ~0.93: equivalent
    _, directions = verdicts(quick_null, (0, 2), "brier")  # A/A': equally good, other errors
    assert sum(d in DIRECTIONAL for d in directions) <= 3


def test_a_planted_difference_of_a_tenth_is_found():
    runs = planted_runs(seed=12, reps=20, deltas=[0.10])
    for metric in ("accuracy", "brier"):
        found, _ = verdicts(runs, (0, 1), metric)
        assert found.count(crossfit.BETTER) >= 18, (metric, found)
        found, _ = verdicts(runs, (1, 0), metric)  # the other way round: worse
        assert found.count(crossfit.WORSE) >= 18, (metric, found)


def test_random_labels_are_not_testable():
    runs = random_label_runs(seed=13, reps=15)
    for passed, gated in gate_and_verdicts(runs):
        assert not passed and set(gated) == {crossfit.NOT_TESTABLE}


# --- the full calibration ------------------------------------------------------------------


REPS = 200


@pytest.mark.extended
@pytest.mark.parametrize("accuracy", [0.80, 0.93])
def test_full_null_calibration(accuracy):
    runs = null_runs(seed=21 + int(accuracy * 100), reps=REPS, accuracy=accuracy)
    print(f"\nA/A and A/A' at true accuracy ~{accuracy}, 2x5 cross-fit, {REPS} repetitions")
    for name, pair in (("A/A", (0, 1)), ("A/A'", (0, 2))):
        for metric in MARGINS:
            found, directions = verdicts(runs, pair, metric)
            wrong = sum(d in DIRECTIONAL for d in directions)
            naive = naive_excludes_zero(runs, pair, metric)
            equivalent = found.count(crossfit.EQUIVALENT)
            print(
                f"  {name:5s} {metric:9s} better/worse {sim.rate_text(wrong, REPS)}; "
                f"equivalent {sim.rate_text(equivalent, REPS)}; naive pooled test "
                f"{sim.rate_text(naive, REPS)}"
            )
            assert wrong / REPS <= 0.075
            if name == "A/A" and accuracy == 0.93 and metric == "brier":
                assert equivalent / REPS >= 0.9  # truly equal: equivalent, not inconclusive
    naive = naive_excludes_zero(runs, (0, 2), "brier")
    assert naive / REPS > 0.075  # the test that ignores training variance fails A/A'


@pytest.mark.extended
def test_full_power_curve():
    deltas = [0.02, 0.04, 0.06, 0.08, 0.10]
    runs = planted_runs(seed=31, reps=REPS, deltas=deltas, population=2000)
    truth = np.nanmean(runs.true_accuracy, axis=(0, 2, 3))
    print(f"\npower, 2x5 cross-fit, {REPS} repetitions, config A at true accuracy {truth[0]:.3f}")
    for j, planted in enumerate(deltas, start=1):
        true_delta = truth[j] - truth[0]
        line = []
        for metric in ("accuracy", "brier", "log_loss"):
            found, directions = verdicts(runs, (0, j), metric)
            better = found.count(crossfit.BETTER)
            above = directions.count(crossfit.B_BETTER)  # includes "equivalent, B better"
            line.append(
                f"{metric} better {sim.rate_text(better, REPS)} (95% CI above 0 {above / REPS:.3f})"
            )
            if planted == 0.08 and metric in ("accuracy", "brier"):
                assert abs(true_delta - 0.08) < 0.015
                assert better / REPS >= 0.8
        print(f"  planted +{planted:.2f} (true {true_delta:+.3f}): " + "; ".join(line))


@pytest.mark.extended
def test_full_random_labels():
    runs = random_label_runs(seed=41, reps=REPS)
    results = gate_and_verdicts(runs)
    passed = sum(p for p, _ in results)
    verdicts_all = [v for _, gated in results for v in gated]
    not_testable = verdicts_all.count(crossfit.NOT_TESTABLE)
    print(
        f"\nrandom labels, {REPS} repetitions, 3 configs: some config beats the majority "
        f"class (Holm) {sim.rate_text(passed, REPS)}; effect verdicts not testable "
        f"{sim.rate_text(not_testable, len(verdicts_all))}"
    )
    assert passed / REPS <= 0.05
    for beats, gated in results:  # where nothing beats guessing, nothing is decided
        assert beats or set(gated) == {crossfit.NOT_TESTABLE}
