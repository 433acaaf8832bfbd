"""The F5 sweep: its grid, one real training per cell, and the rules C1, C4 and F5 apply."""

from __future__ import annotations

import pytest

from tasks.dropout import sweep, verdicts


def spec_for(tmp_path, **fields) -> sweep.SweepSpec:
    return sweep.SweepSpec(
        cache_dir=tmp_path, manifest_path=tmp_path / "manifest.parquet", n_classes=2,
        feature_shape=(3, 3, 768), **fields,
    )  # fmt: skip


def test_rate_zero_and_none_are_one_training_and_claim_cells_are_added(tmp_path):
    spec = spec_for(tmp_path, rates=[0.0, 0.2], placements=["after_dense2", "none"], seeds=[0, 1])
    rows = sweep.grid(spec)
    effective = {(r["rate"], r["placement"]): (r["effective_rate"], r["effective_placement"])
                 for r in rows}  # fmt: skip
    assert effective[(0.0, "after_dense2")] == effective[(0.2, "none")] == (0.0, "none")
    assert effective[(0.2, "after_dense2")] == (0.2, "after_dense2")
    added = [(r["rate"], r["placement"]) for r in rows if r["added"]]
    assert added == [(0.5, "after_dense2"), (0.5, "after_both")]  # C1 and C4 need these
    cells = [(c.rate, c.placement, c.seed) for c in sweep.trainings(spec)]
    assert len(cells) == len(set(cells)) == 4 * 2
    assert cells.count((0.0, "none", 0)) == 1


def test_train_cell_trains_the_requested_head_deterministically(tiny_run):
    config = tiny_run.config
    spec = sweep.SweepSpec.from_run(
        config.model_copy(update={"sweep_epochs": 2}), tiny_run.cache.cache_dir,
        tiny_run.manifest.path, 2, tiny_run.cache.feature_shape,
    )  # fmt: skip
    both = sweep.SweepCell(rate=0.5, placement="after_both", seed=3)
    first, again = sweep.train_cell(spec, both), sweep.train_cell(spec, both)
    assert first["dropout_layers"] == 2
    assert len(first["history"]["val_accuracy"]) == 2
    assert first["split_sizes"]["train"] > 0 and first["test"]["accuracy"] is not None
    for split in ("train", "validation", "test"):
        assert first[split] == again[split]  # same seed, same data order: same model
    plain = sweep.train_cell(spec, sweep.SweepCell(rate=0.0, placement="none", seed=3))
    assert plain["dropout_layers"] == 0
    summary = sweep.summarize(spec, [first, plain])
    assert summary["selection_split"] == "validation"
    assert sweep.find(summary, 0.0, "after_both")["placement"] == "none"


def stat(mean: float, std: float = 0.0, n: int = 3) -> dict:
    return {"mean": mean, "std": std, "n": n}


def summary_of(rows: dict[tuple[float, str], tuple[float, float]], n_val: int = 100) -> dict:
    """A sweep summary with the given (validation accuracy, train-validation gap) per config."""
    configs = [
        {"rate": rate, "placement": placement, "seeds": 3,
         "validation_accuracy": stat(acc), "gap_accuracy": stat(gap)}
        for (rate, placement), (acc, gap) in rows.items()
    ]  # fmt: skip
    return {
        "selection_split": "validation", "split_sizes": {"validation": n_val}, "epochs": 5,
        "seeds": [0, 1, 2], "configs": configs,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("end_only", "every_layer", "expected"),
    [(0.90, 0.80, verdicts.SUPPORTED), (0.80, 0.805, verdicts.SUPPORTED),
     (0.70, 0.80, verdicts.REFUTED)],
)  # fmt: skip
def test_c1_compares_end_only_with_every_layer(end_only, every_layer, expected):
    summary = summary_of({
        (0.0, "none"): (0.8, 0.1),
        (0.5, "after_dense2"): (end_only, 0.1),
        (0.5, "after_both"): (every_layer, 0.1),
    })  # fmt: skip
    assert verdicts.judge_c1(summary)["verdict"] == expected


def test_c4_and_f5_follow_the_numbers():
    best_is_p05 = summary_of({
        (0.0, "none"): (0.80, 0.15), (0.2, "after_dense2"): (0.82, 0.05),
        (0.5, "after_dense2"): (0.83, 0.04), (0.5, "after_both"): (0.90, 0.02),
    })  # fmt: skip
    context = {"rate": 0.2, "placement": "after_dense2"}
    assert verdicts.judge_c4(best_is_p05, context)["verdict"] == verdicts.SUPPORTED
    assert verdicts.judge_f5(best_is_p05, context)["verdict"] == verdicts.SUPPORTED
    p05_second = summary_of({
        (0.0, "none"): (0.80, 0.15), (0.2, "after_dense2"): (0.95, 0.15),
        (0.5, "after_dense2"): (0.83, 0.04), (0.5, "after_both"): (0.88, 0.02),
    })  # fmt: skip
    assert verdicts.judge_c4(p05_second, context)["verdict"] == verdicts.CORRECTED
    assert verdicts.judge_f5(p05_second, context)["verdict"] == verdicts.REFUTED  # same gap
    p05_worst = summary_of({
        (0.0, "none"): (0.80, 0.15), (0.2, "after_dense2"): (0.70, 0.02),
        (0.5, "after_dense2"): (0.83, 0.04), (0.5, "after_both"): (0.60, 0.02),
    })  # fmt: skip
    assert verdicts.judge_c4(p05_worst, context)["verdict"] == verdicts.REFUTED
    assert verdicts.judge_f5(p05_worst, context)["verdict"] == verdicts.CORRECTED  # costs acc


def test_a_sweep_that_beats_no_baseline_says_so():
    summary = summary_of({
        (0.0, "none"): (0.5, 0.0), (0.5, "after_dense2"): (0.5, 0.0),
        (0.5, "after_both"): (0.5, 0.0),
    })  # fmt: skip
    context = {"rate": 0.5, "placement": "after_dense2"}
    assert "Uninformative" not in verdicts.judge_c1(summary)["explanation"]
    summary.update(beats_majority=False, majority_accuracy=0.5)
    for judged in (verdicts.judge_c1(summary), verdicts.judge_c4(summary, context),
                   verdicts.judge_f5(summary, context)):  # fmt: skip
        assert "Uninformative on this data" in judged["explanation"]
