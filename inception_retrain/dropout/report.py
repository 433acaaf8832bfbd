"""dropout_impact.{json,md,html}: the answer first, then every finding by kind of claim.

The document opens with the answer in the question's own terms (`prose.answer`), then shows
the three kinds of claim apart: mechanism (checked bit for bit), effect on this data
(statistical, with the sweep's settings, table and plots), and history or practice (not
testable here). Every finding shows its verdict, what it found, the rule that decided it,
what would have flipped it and its numbers; no table cell holds raw JSON. Both renderings
carry the random-weights banner when the backbone's weights are random. The HTML is one
self-contained file (plots as data URIs); the Markdown links the PNGs beside it. The JSON holds
everything, each measurement in full under its claim's `details`.

    json_path = write_reports(run_dir, measurements, entries, figures, timings)
"""

from __future__ import annotations

from pathlib import Path

from inception_retrain.dropout import prose
from inception_retrain.dropout.claims import KINDS, Entry
from inception_retrain.dropout.effects import label
from inception_retrain.dropout.measurements import Measurements, as_json
from inception_retrain.dropout.verdicts import tally
from inception_retrain.evaluation.reports import render
from inception_retrain.plumbing.files import atomic_write
from inception_retrain.plumbing.schemas import write_document

KIND, VERSION, FILE_NAME = "dropout-impact", 2, "dropout_impact.json"
TITLE = "Which layers does Dropout affect? Dropout-impact report"
QUESTION = (
    "A frozen InceptionV3 (cut at mixed7) feeds Flatten, Dense(512), Dense(1024), Dropout(0.2) "
    "and a Dense output. Which layers does this Dropout affect: the whole network including "
    "the frozen layers, only the new layers, or only Dense(1024)? Whose neurons are switched "
    "off in each epoch?"
)
FIGURES_FOR = {
    ("C5", "mechanism"): ("mask_histogram",),
    ("F1", "mechanism"): ("forward_layers", "mask_steps"),
    ("F2", "mechanism"): ("gradient_changes",),
    ("F4", "effect"): ("mc_uncertainty",),
}
SWEEP_FIGURES = ("sweep_summary", "sweep_comparisons", "sweep_curves")
DETAILS_FOR = {
    "C2": ("activation_order",),
    "C6": ("backbone_reach",),
    "C7": ("noise_shapes",),
    "F1": ("forward", "fit_masks"),
    "F2": ("backward",),
    "F3": ("frozen", "cache_facts"),
    "F4": ("inference",),
    "F5": ("sweep",),
}
COMPARISON_COLUMNS = [
    "comparison",
    "a - b",
    "metric",
    "seeds",
    "mean",
    "95% CI",
    "d_z",
    "threshold",
    "outcome",
    "cannot decide because",
]
SWEEP_COLUMNS = [
    "config",
    "grid cells",
    "seeds",
    "degenerate",
    "epochs run",
    "validation acc",
    "test acc",
    "train - test gap",
    "test acc over images (learned seeds)",
    "beats majority",
]
REASON_TITLES = {
    "inconclusive": "Why it cannot decide",
    "refuted": "Why refuted",
    "not testable here": "Why not testable here",
    "supported": "Note",
    "clarified": "Note",
}
LAYER_COLUMNS = ["layer", "kind", "shape", "max_abs_delta", "fraction_changed", "changed"]


def _ci(mean, low, high) -> str:
    if mean is None:
        return "n/a"
    if low is None or high is None:
        return f"{mean:.3f} [n/a]"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _stat(stat) -> str:
    return "n/a" if stat is None else _ci(stat.mean, stat.low, stat.high)


def _epochs(row) -> str:
    runs = [r.epochs_run for r in row.runs]
    return f"{sum(runs) / len(runs):.1f} ({min(runs)}-{max(runs)})" if runs else "n/a"


def sweep_rows(m: Measurements) -> list[dict]:
    s = m.sweep
    units = m.context.hidden_units
    return [
        {
            "config": label(row, units),
            "grid cells": ", ".join(row.cells),
            "seeds": len(row.runs),
            "degenerate": row.degenerate,
            "epochs run": _epochs(row),
            "validation acc": _stat(row.validation_accuracy),
            "test acc": _stat(row.test_accuracy),
            "train - test gap": _stat(row.gap_accuracy),
            "test acc over images (learned seeds)": _stat(row.accuracy_over_images),
            "beats majority": "yes" if row.beats_majority else "no",
        }
        for row in s.configs
    ]


def sweep_cache_text(summary) -> str:
    """How many sweep trainings ran in this run and how many came from the sweep cache."""
    cache = summary.cache
    if cache is None:
        return ""
    total = f"{summary.trainings} sweep training" + ("" if summary.trainings == 1 else "s")
    if cache.dir is None:
        return f"{total}, all trained in this run (no WORKDIR known: no sweep cache)."
    return (
        f"{total}: {cache.computed} trained in this run, {cache.reused} reused from the "
        f"sweep cache {cache.dir} (the stored results of the same trainings on the same "
        f"data; training is deterministic)."
    )


def sweep_settings(m: Measurements) -> str:
    s = m.sweep
    sizes = ", ".join(f"{k} {v}" for k, v in s.split_sizes.items())
    majority = s.majority_accuracy.get(s.evaluation_split)
    return (
        f"Sweep ({s.grid} grid): {len(s.configs)} configs x {len(s.seeds)} seeds = "
        f"{s.trainings} trainings of at most {s.epochs} epochs, early stopping on validation "
        f"loss with patience {s.patience} and the best epoch's weights restored "
        f"({s.epochs_total} epochs run in all). A seed gives every config the same initial "
        f"weights and data order. Images: {sizes}. The best config is picked on "
        f"{s.selection_split}, effects are measured on {s.evaluation_split}, where always "
        f"predicting the majority class scores {'n/a' if majority is None else f'{majority:.3f}'}"
        f". Degenerate trainings (one class for every {s.selection_split} image): "
        f"{s.degenerate} of {s.trainings}. Equivalence margin, fixed in the config before the "
        f"run: {m.context.equivalence_margin:g}."
    )


def build_document(m: Measurements, entries: list[Entry], figures: dict, timings: dict) -> dict:
    claims = []
    for entry in entries:
        findings = []
        for finding in entry.findings:
            item = as_json(finding)
            item["explanation"] = prose.explain(m, finding)
            item["figures"] = [
                figures[n].name for n in FIGURES_FOR.get((entry.id, finding.kind), ())
            ]
            findings.append(item)
        claim = {"id": entry.id, "claim": entry.claim, "findings": findings}
        details = {key: getattr(m, key) for key in DETAILS_FOR.get(entry.id, ())}
        if details:
            claim["details"] = as_json(details)
        claims.append(claim)
    return as_json(
        {
            "title": TITLE,
            "question": QUESTION,
            "answer": [
                {"question": b.question, "answer": b.answer} for b in prose.answer(m, entries)
            ],
            "verdict_counts": tally(entries),
            "kinds": KINDS,
            "run": m.context,
            "claims": claims,
            "sweep_settings": sweep_settings(m),
            "sweep_figures": [figures[name].name for name in SWEEP_FIGURES],
            "sweep_cache": m.sweep.cache,
            "timings_seconds": timings,
        }
    )


def _context(document: dict, m: Measurements, run_dir: Path) -> dict:
    """What the dropout_impact templates are filled with."""
    sections = {kind: [] for kind in KINDS}
    summary_rows = []
    for claim in document["claims"]:
        for item in claim["findings"]:
            view = {
                **item,
                "id": claim["id"],
                "claim": claim["claim"],
                "number_rows": list(item["numbers"].items()),
                "comparison_rows": _comparison_rows(item),
            }
            sections[item["kind"]].append(view)
            summary_rows.append(
                {
                    "claim": claim["id"],
                    "kind": item["kind"],
                    "verdict": item["verdict"],
                    "question": item["question"],
                }
            )
    layers = [
        {**row, "shape": "x".join(map(str, row["shape"]))} for row in as_json(m.forward.layers)
    ]
    return {
        "title": document["title"],
        "document": document,
        "sections": [(KINDS[kind], kind, views) for kind, views in sections.items()],
        "summary_rows": summary_rows,
        "summary_columns": ["claim", "kind", "verdict", "question"],
        "run_dir": Path(run_dir),
        "random_weights": m.context.weights_description if m.context.random_weights else "",
        "sweep_rows": sweep_rows(m),
        "sweep_columns": SWEEP_COLUMNS,
        "sweep_cache": sweep_cache_text(m.sweep),
        "comparison_columns": COMPARISON_COLUMNS,
        "reason_titles": REASON_TITLES,
        "head_layers": [row for row in layers if row["kind"] == "head"],
        "layers": layers,
        "layer_columns": LAYER_COLUMNS,
        "timing_rows": list(document["timings_seconds"].items()),
    }


def _comparison_rows(finding: dict) -> list[dict]:
    """A finding's comparisons (as in the JSON) as table rows."""
    return [
        {
            "comparison": c["name"] + ("" if c["deciding"] else " (context)"),
            "a - b": f"{c['a']} - {c['b']}",
            "metric": c["metric"],
            "seeds": f"{c['n']}"
            + (f" (left out: {', '.join(map(str, c['excluded']))})" if c["excluded"] else ""),
            "mean": c["mean"],
            "95% CI": "n/a" if c["low"] is None else f"[{c['low']:.3f}, {c['high']:.3f}]",
            "d_z": c["effect_size"],
            "threshold": c["threshold"],
            "outcome": c["outcome"],
            "cannot decide because": c["blocked"] or "-",
        }
        for c in finding["comparisons"]
    ]


def write_reports(
    run_dir: Path, m: Measurements, entries: list[Entry], figures: dict, timings: dict
) -> Path:
    """Write dropout_impact.json, .md and .html into `run_dir`; returns the JSON's path."""
    run_dir = Path(run_dir)
    document = build_document(m, entries, figures, timings)
    context = _context(document, m, run_dir)
    atomic_write(run_dir / "dropout_impact.md", render("dropout_impact.md.j2", **context))
    atomic_write(run_dir / "dropout_impact.html", render("dropout_impact.html.j2", **context))
    return write_document(run_dir / FILE_NAME, KIND, VERSION, document)
