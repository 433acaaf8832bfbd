"""The data checks calibrated by simulation: false alarms under no change, power on planted
changes, for each test, for the Holm family as a whole, and for the promotion's slice gate.

Every repetition draws its own reference and new batch from one generator with a seed of its
own (fixed: the rates are reproducible), so the checks' permutation p-values are exact and
the false-alarm rate at 5% must be consistent with 5%; the bound asserted is the issue's,
at most 7.5%. The rates are printed (`pytest -s`) and recorded in docs/data-checks.md:

    .venv/bin/pytest -s tests/test_data_checks_calibration.py               # fast versions
    .venv/bin/pytest -s -m extended tests/test_data_checks_calibration.py   # 200 x 999

The fast versions (default suite) use small feature dimensions and, for single tests, 99
permutations over 1000 repetitions (so that a rate near 5% is measured to about +-1.4%); the
family needs 999 permutations (its strictest Holm step, 0.05/9, is below 1/100), so even the
fast family runs 999 on small features. The extended versions run the issue's 200
repetitions with 999 permutations on 768-channel features, the size of pooled mixed7. BLAS
runs one thread, as the data checks do (`distribution_tests.blas_threads`).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from inception_retrain.data import distribution_tests as T
from inception_retrain.evaluation.drift import mmd_test
from inception_retrain.registry.promotion_policy import PromotionPolicy
from inception_retrain.registry.slice_gate import gate_rows

ALPHA = 0.05
LIMIT = 0.075  # the bound on a false-alarm rate at nominal 5%


@pytest.fixture(autouse=True)
def one_blas_thread():
    with T.blas_threads(1):
        yield


def rate_text(flags: int, reps: int) -> str:
    interval = stats.binomtest(flags, reps).proportion_ci(0.95, method="exact")
    return f"{flags}/{reps} = {flags / reps:.1%} [{interval.low:.1%}, {interval.high:.1%}]"


def features(rng, n, d, shift=0.0, scale=1.0):
    """Feature-like rows: ReLU of correlated Gaussians (many exact zeros, skewed), as pooled
    mixed7 features are; `shift` moves them (a planted drift)."""
    mixing = np.random.default_rng([123, d]).normal(size=(d, d)) / np.sqrt(d)
    return np.maximum(scale * (rng.normal(size=(n, d)) @ mixing) + shift, 0.0)


def properties(rng, n, brightness_scale=1.0):
    """Image properties with the ties real ones have: integer sizes, a two-format mix, 3%
    grayscale, rounded brightness."""
    return {
        "width": rng.integers(120, 261, n),
        "height": rng.integers(120, 261, n),
        "format": rng.choice(["JPEG", "PNG"], n),
        "mode": rng.choice(["RGB", "L"], n, p=(0.97, 0.03)),
        "brightness": np.round(brightness_scale * rng.normal(120, 30, n)),
    }


def family(rng, d, n_reference, n_new, permutations, seed, shift=0.0, brightness=1.0):
    """The production family on simulated data: class balance, the five property checks and
    the MMD test overall and per class, with the same tests and Holm as a run."""
    labels_ref = rng.choice(["a", "b"], n_reference)
    labels_new = rng.choice(["a", "b"], n_new)
    x_ref = features(rng, n_reference, d)
    x_new = features(rng, n_new, d, shift=shift)
    p_ref, p_new = properties(rng, n_reference), properties(rng, n_new, brightness)
    settings = {"permutations": permutations, "seed": seed}
    checks = [
        T.categorical_test(labels_ref, labels_new, "class-balance", "class-balance", **settings)
    ]
    short = {k: np.minimum(v["width"], v["height"]) for k, v in (("r", p_ref), ("n", p_new))}
    aspect = {k: np.log(v["width"] / v["height"]) for k, v in (("r", p_ref), ("n", p_new))}
    checks.append(T.ks_test(short["r"], short["n"], "short-side", **settings))
    checks.append(T.ks_test(aspect["r"], aspect["n"], "aspect-ratio", **settings))
    checks.append(T.categorical_test(p_ref["format"], p_new["format"], "format", **settings))
    checks.append(T.categorical_test(p_ref["mode"], p_new["mode"], "mode", **settings))
    checks.append(T.ks_test(p_ref["brightness"], p_new["brightness"], "brightness", **settings))
    checks.append(mmd_test(x_ref, x_new, "features:all", **settings))
    for name in ("a", "b"):
        checks.append(
            mmd_test(
                x_ref[labels_ref == name], x_new[labels_new == name], f"features:{name}", **settings
            )
        )
    return T.holm(checks, ALPHA)


def single_test_rates(reps: int, permutations: int, d: int, n_reference=120, n_new=30) -> dict:
    """False alarms (raw p <= 0.05) of each kind of test under no change."""
    flags = {"features (MMD)": 0, "class balance (chi-square)": 0, "brightness (KS)": 0}
    for rep in range(reps):
        rng = np.random.default_rng([1, rep])
        settings = {"permutations": permutations, "seed": rep}
        mmd = mmd_test(features(rng, n_reference, d), features(rng, n_new, d), **settings)
        probabilities = (0.7, 0.25, 0.05)
        balance = T.categorical_test(
            rng.choice(3, n_reference, p=probabilities),
            rng.choice(3, n_new, p=probabilities),
            "class-balance",
            **settings,
        )
        p_ref, p_new = properties(rng, n_reference), properties(rng, n_new)
        ks = T.ks_test(p_ref["brightness"], p_new["brightness"], "brightness", **settings)
        for name, check in zip(flags, (mmd, balance, ks), strict=True):
            flags[name] += check.p_value <= ALPHA
    return flags


def family_rates(reps: int, permutations: int, d: int, **planted) -> tuple[int, dict]:
    """(runs with any check flagged after Holm, flags per check) over `reps` runs."""
    any_flag, per_check = 0, {}
    for rep in range(reps):
        rng = np.random.default_rng([2, rep])
        checks = family(rng, d, 300, 40, permutations, rep, **planted)
        any_flag += any(c.flagged for c in checks)
        for check in checks:
            per_check[check.name] = per_check.get(check.name, 0) + check.flagged
    return any_flag, per_check


def _report(title: str, flags: dict, reps: int) -> None:
    print(f"\n{title}")
    for name, count in flags.items():
        print(f"  {name:28s} {rate_text(count, reps)}")


# --- fast versions (default suite) ---------------------------------------------------------


def test_each_test_raises_few_false_alarms_under_no_change():
    reps = 1000
    flags = single_test_rates(reps, permutations=99, d=32)
    _report("false alarms at p <= 0.05, 1000 repetitions, 99 permutations, d=32:", flags, reps)
    for name, count in flags.items():
        assert count <= LIMIT * reps, f"{name}: {rate_text(count, reps)}"


def test_the_family_raises_few_false_alarms_and_finds_planted_changes():
    reps = 100
    any_flag, per_check = family_rates(reps, permutations=999, d=16)
    _report(f"family (Holm), no change: any flagged {rate_text(any_flag, reps)}", per_check, reps)
    assert any_flag <= LIMIT * reps
    dim, per_check = family_rates(20, permutations=999, d=16, shift=0.5, brightness=0.5)
    _report(f"family, planted shift: any flagged {rate_text(dim, 20)}", per_check, 20)
    assert per_check["features:all"] == 20 and per_check["brightness"] == 20


# --- the promotion's slice gate --------------------------------------------------------------


def simulate_gate(reps: int, drop: float, champion_accuracy=0.85, slices=8, n=40, seed=0):
    """Runs in which some slice is refused, with one slice of n images whose new accuracy
    is `drop` lower (the others unchanged), errors of the two models correlated."""
    policy = PromotionPolicy(models_dir="/nonexistent", max_slice_drop=0.10, slice_min_images=10)
    refused_any, refused_target = 0, 0
    for rep in range(reps):
        rng = np.random.default_rng([seed, rep])
        champion, new, members = {}, {}, {}
        for s in range(slices):
            ids = [f"{s}-{i}" for i in range(n)]
            members[f"source=s{s}"] = ids
            accuracy = champion_accuracy - (drop if s == 0 else 0.0)
            shared = rng.random(n)  # an image hard for one model tends to be hard for both
            for k, cid in enumerate(ids):
                champion[cid] = float(shared[k] < champion_accuracy)
                own = shared[k] if rng.random() < 0.7 else rng.random()
                new[cid] = float(own < accuracy)
        rows, _ = gate_rows(new, champion, members, policy)
        worse = [r["slice"] for r in rows if r["verdict"] == "worse"]
        refused_any += bool(worse)
        refused_target += "source=s0" in worse
    return refused_any, refused_target


def test_the_slice_gate_rarely_refuses_a_model_that_broke_nothing_and_catches_a_collapse():
    reps = 300
    null, _ = simulate_gate(reps, drop=0.0)
    at_margin, _ = simulate_gate(reps, drop=0.10, seed=1)
    _, collapse = simulate_gate(100, drop=0.5, seed=2)
    print(
        f"\nslice gate, 8 slices of 40 images, margin 0.10: refused with no drop "
        f"{rate_text(null, reps)}; with one slice 0.10 worse {rate_text(at_margin, reps)}; "
        f"one slice 0.5 worse caught {rate_text(collapse, 100)}"
    )
    assert null <= 0.025 * reps  # the one-sided family-wise bound
    assert at_margin <= LIMIT * reps  # at the margin itself: still rare
    assert collapse >= 90


# --- extended: the full calibration --------------------------------------------------------


@pytest.mark.extended
def test_full_calibration_of_each_test_and_the_family():
    """200 repetitions, 999 permutations, 768-channel features: what docs/data-checks.md
    records."""
    reps = 200
    flags = single_test_rates(reps, permutations=999, d=768, n_reference=300, n_new=40)
    _report("false alarms at p <= 0.05, 200 repetitions, 999 permutations, d=768:", flags, reps)
    for name, count in flags.items():
        assert count <= LIMIT * reps, f"{name}: {rate_text(count, reps)}"
    any_flag, per_check = family_rates(reps, permutations=999, d=768)
    _report(f"family (Holm), no change: any flagged {rate_text(any_flag, reps)}", per_check, reps)
    assert any_flag <= LIMIT * reps
    for name, count in per_check.items():
        assert count <= LIMIT * reps, name
    planted, per_check = family_rates(50, permutations=999, d=768, shift=0.3, brightness=0.8)
    _report(f"family, planted shift: any flagged {rate_text(planted, 50)}", per_check, 50)
    assert planted >= 45


@pytest.mark.extended
def test_full_calibration_of_the_slice_gate():
    reps = 2000
    null, _ = simulate_gate(reps, drop=0.0, seed=10)
    at_margin, _ = simulate_gate(reps, drop=0.10, seed=11)
    _, collapse = simulate_gate(500, drop=0.5, seed=12)
    _, smaller = simulate_gate(500, drop=0.45, n=30, seed=13)
    print(
        f"\nslice gate (2000 runs, 8 slices of 40): refused with no drop "
        f"{rate_text(null, reps)}; one slice 0.10 worse {rate_text(at_margin, reps)}; one "
        f"slice 0.5 worse caught {rate_text(collapse, 500)}; 0.45 worse on 30 images "
        f"{rate_text(smaller, 500)}"
    )
    assert null <= 0.025 * reps and at_margin <= LIMIT * reps and collapse >= 0.9 * 500
