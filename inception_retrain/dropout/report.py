"""dropout_impact.{json,md,html}: the answer first, then every finding by kind of claim.

The document opens with a one-sentence answer and a row per layer with a column per question
(forward pass, gradients, weights at inference), each cell a measured number (`layer_table`),
small enough for the first screen; then a contents list, the answer in the question's own terms
(`prose.answer`), and the three kinds of claim apart: mechanism (checked bit for bit), effect on
this data (statistical, with the sweep's settings, table and plots), and history or practice
(not testable here). Every finding shows its verdict, what it found, the rule that decided it,
what would have flipped it and its numbers; no table cell holds raw JSON. On the pages, headings
are the findings' questions with the claim code as a small tag that a legend explains; rules,
raw tables and per-training details fold into `<details>`, and layers and keys read as words
(`wording`), never as the program's names, which the JSON keeps. Both renderings carry the
random-weights banner when the backbone's weights are random. The HTML is one self-contained
file (plots as data URIs); the Markdown links the PNGs beside it. The JSON holds everything,
each measurement in full under its claim's `details`.

    json_path = write_reports(run_dir, measurements, entries, figures, timings)
"""

from __future__ import annotations

from pathlib import Path

from inception_retrain.dropout import layer_table, prose
from inception_retrain.dropout.claims import KINDS, Entry
from inception_retrain.dropout.effects import label
from inception_retrain.dropout.measurements import Measurements, as_json
from inception_retrain.dropout.verdicts import tally
from inception_retrain.dropout.wording import readable, words
from inception_retrain.evaluation.reports import render
from inception_retrain.plumbing.files import atomic_write
from inception_retrain.plumbing.schemas import write_document

KIND, VERSION, FILE_NAME = "dropout-impact", 4, "dropout_impact.json"  # 4: answer_sentence, layers
TITLE = "Which layers does Dropout affect? Dropout-impact report"
QUESTION = (
    "A frozen InceptionV3 (cut at mixed7) feeds Flatten, Dense(512), Dense(1024), Dropout(0.2) "
    "and a Dense output. Which layers does this Dropout affect: the whole network including "
    "the frozen layers, only the new layers, or only Dense(1024)? Whose neurons are switched "
    "off in each epoch?"
)
FIGURES_FOR = {
    ("C1", "effect"): ("effect_C1",),
    ("C2", "effect"): ("effect_C2",),
    ("C4", "effect"): ("effect_C4",),
    ("C5", "mechanism"): ("mask_histogram",),
    ("F1", "mechanism"): ("forward_layers", "mask_steps"),
    ("F2", "mechanism"): ("gradient_changes",),
    ("F4", "effect"): ("effect_F4", "mc_uncertainty"),
    ("F5", "effect"): ("effect_F5",),
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
    "B vs A",
    "score",
    "design",
    "difference (B's advantage)",
    "95% CI",
    "90% CI",
    "margin",
    "verdict",
    "could detect",
    "degenerate pairs",
]
SWEEP_COLUMNS = [
    "config",
    "grid cells",
    "trainings",
    "degenerate",
    "out-of-fold accuracy [95% Wilson]",
    "Brier",
    "log loss",
    "train accuracy",
    "train - held-out gap",
    "beats majority (Holm p)",
]
REASON_TITLES = {
    "inconclusive": "Why it cannot decide",
    "refuted": "Why refuted",
    "not testable here": "Why not testable here",
    "supported": "Note",
    "clarified": "Note",
}
LAYER_COLUMNS = ["layer", "part", "shape", "max |Δ|", "share of values changed", "changed"]
LEGEND = {
    "C1-C7": "the claims of the answers this report checks, each quoted under its heading",
    "F1-F5": "this report's own measurements, stated as what one expects",
    "mechanism": "what Dropout does, deterministic, checked bit for bit on the run's model",
    "effect": "what Dropout does to this head on this data: statistical, configs compared "
    "image by image over a cross-fit of the labelled images",
    "practice": "history or common practice: not testable with one model and one data set",
}
VERDICT_MEANINGS = {
    "supported": "the rule's measurement came out for the claim",
    "refuted": "the rule's measurement came out against the claim",
    "inconclusive": "the measurement could not decide (an interval too wide); it says what "
    "would decide",
    "not testable here": "nothing in this run can decide it, with the reason",
    "clarified": "right in what it says, but imprecise in a way that holds for any rate",
}
SECTION_IDS = {"mechanism": "mechanism", "effect": "effect", "practice": "practice"}


def _ci(low, high) -> str:
    return "n/a" if low is None or high is None else f"[{low:.4f}, {high:.4f}]"


def _cell_words(cell: str) -> str:
    """A sweep grid cell 'rate/placement' in words: '0.2/after_dense2' -> 'rate 0.2 after the
    last hidden layer'."""
    rate, _, placement = cell.partition("/")
    return f"rate {rate} {words(placement)}" if placement else cell


def sweep_rows(m: Measurements) -> list[dict]:
    s = m.sweep
    units = m.context.hidden_units
    return [
        {
            "config": label(row, units),
            "grid cells": "; ".join(_cell_words(cell) for cell in row.cells),
            "trainings": row.trainings,
            "degenerate": row.degenerate,
            "out-of-fold accuracy [95% Wilson]": f"{row.accuracy:.3f} "
            f"[{row.accuracy_low:.3f}, {row.accuracy_high:.3f}]",
            "Brier": f"{row.brier:.4f}",
            "log loss": f"{row.log_loss:.4f}",
            "train accuracy": f"{row.train_accuracy:.3f}",
            "train - held-out gap": f"{row.gap:.3f}",
            "beats majority (Holm p)": f"{'yes' if row.beats_majority else 'no'} "
            f"({row.p_holm:.2g})",
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
    plan = s.plan
    counts = ", ".join(str(c) for c in plan.class_counts())
    sample = (
        f"a stratified sample of {plan.n} of the {plan.pool_size} train and validation images "
        "(the same on every rerun: drawn from content ids)"
        if plan.sampled
        else f"all {plan.n} train and validation images"
    )
    evidence = m.context.evidence
    margins = (
        f"Deciding score: {evidence.metric}; margins fixed in the config before the run: "
        f"accuracy ±{evidence.accuracy_margin:g}, Brier ±{evidence.brier_margin:g}, log loss "
        f"±{evidence.log_loss_margin:g}, AUROC (F4) ±{evidence.auroc_margin:g}."
        if evidence
        else ""
    )
    standardized = (
        "inputs standardised per feature with the training folds' statistics"
        if s.standardize
        else "raw inputs"
    )
    return (
        f"Sweep ({s.grid} grid), cross-fitted: {sample} (images per class {counts}) split "
        f"{s.repeats} times into {s.folds} stratified folds; each of {len(s.configs)} configs "
        f"is trained on all folds but one and predicts the one left out, so every image has "
        f"an out-of-fold prediction of every config in every repeat. The test split is "
        f"untouched. {s.trainings} trainings of a fixed {s.epochs} epochs each (no early "
        f"stopping; {standardized}); the trainings of one repeat and fold start from the same "
        "seed, so every comparison is paired image by image and tested by the corrected "
        "resampled t of Nadeau & Bengio (2003), calibrated in docs/evidence.md. Always "
        f"predicting the training folds' majority class scores {s.majority_accuracy:.3f} out "
        f"of fold. Degenerate trainings (one class for every held-out image): {s.degenerate} "
        f"of {s.trainings}, kept in the comparisons as their configs' real outcomes. {margins}"
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
            "answer_sentence": layer_table.answer_sentence(m),
            "layers": layer_table.layer_rows(m),
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


def anchor(claim: str, kind: str, index: int = 1) -> str:
    """The HTML id of a finding: 'c2-effect'; 'c6-mechanism-2' for a claim's second finding
    of one kind."""
    return f"{claim}-{kind}".lower() + (f"-{index}" if index > 1 else "")


def _context(document: dict, m: Measurements, run_dir: Path) -> dict:
    """What the dropout_impact templates are filled with: the document in people's words."""
    names = layer_table.names(m)

    def say(value):
        return readable(value, names)

    sections = {kind: [] for kind in KINDS}
    summary_rows = []
    for claim in document["claims"]:
        seen: dict[str, int] = {}
        for item in claim["findings"]:
            seen[item["kind"]] = seen.get(item["kind"], 0) + 1
            view = {
                **{key: say(value) for key, value in item.items()},
                "id": claim["id"],
                "anchor": anchor(claim["id"], item["kind"], seen[item["kind"]]),
                "claim": say(claim["claim"]),
                "number_rows": [(words(k), say(v)) for k, v in item["numbers"].items()],
                "comparison_rows": [
                    {key: say(value) for key, value in row.items()}
                    for row in _comparison_rows(item)
                ],
            }
            sections[item["kind"]].append(view)
            summary_rows.append(
                {
                    "claim": claim["id"],
                    "kind": item["kind"],
                    "verdict": item["verdict"],
                    "question": view["question"],
                }
            )
    layers = [
        {
            "layer": names.get(row["layer"]) or words(row["layer"]),
            "part": row["kind"],
            "shape": "x".join(map(str, row["shape"])),
            "max |Δ|": row["max_abs_delta"],
            "share of values changed": row["fraction_changed"],
            "changed": "yes" if row["changed"] else "no",
        }
        for row in as_json(m.forward.layers)
    ]
    return {
        "title": document["title"],
        "document": document,
        "sentence": document["answer_sentence"],
        "layer_rows": document["layers"],
        "layer_table_columns": list(layer_table.COLUMNS),
        "answer": [
            {"question": say(b["question"]), "answer": say(b["answer"])} for b in document["answer"]
        ],
        "sections": [
            (KINDS[kind], SECTION_IDS[kind], kind, views) for kind, views in sections.items()
        ],
        "summary_rows": summary_rows,
        "summary_columns": ["claim", "kind", "verdict", "question"],
        "legend": LEGEND,
        "verdict_meanings": VERDICT_MEANINGS,
        "run_dir": Path(run_dir),
        "random_weights": m.context.weights_description if m.context.random_weights else "",
        "sweep_settings": say(document["sweep_settings"]),
        "sweep_rows": [{key: say(value) for key, value in row.items()} for row in sweep_rows(m)],
        "sweep_columns": SWEEP_COLUMNS,
        "sweep_cache": sweep_cache_text(m.sweep),
        "comparison_columns": COMPARISON_COLUMNS,
        "reason_titles": REASON_TITLES,
        "head_layers": [row for row in layers if row["part"] == "head"],
        "layers": layers,
        "layer_columns": LAYER_COLUMNS,
        "timing_rows": [(words(k), v) for k, v in document["timings_seconds"].items()],
    }


def _could_detect(c: dict) -> str:
    if c["verdict"] != "inconclusive":
        return "-"
    text = f"{c['min_detectable']:.4f}" if c["min_detectable"] is not None else "n/a"
    if c["images_needed"]:
        text += f"; ~{c['images_needed']} images would decide"
    return text


def _comparison_rows(finding: dict) -> list[dict]:
    """A finding's comparisons (as in the JSON) as table rows."""
    return [
        {
            "comparison": c["name"] + ("" if c["deciding"] else " (context)"),
            "B vs A": f"{c['b']} vs {c['a']}",
            "score": c["metric"],
            "design": f"{c['design']}, {c['images']} images",
            "difference (B's advantage)": "n/a"
            if c["difference"] is None
            else f"{c['difference']:+.4f}",
            "95% CI": _ci(c["low"], c["high"]),
            "90% CI": _ci(c["low90"], c["high90"]),
            "margin": f"±{c['margin']:g}",
            "verdict": c["verdict"] + (f" ({c['direction']})" if c["direction"] != "none" else ""),
            "could detect": _could_detect(c),
            "degenerate pairs": f"{c['degenerate_pairs']} kept"
            + (f", {c['lost_pairs']} left out" if c["lost_pairs"] else ""),
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
