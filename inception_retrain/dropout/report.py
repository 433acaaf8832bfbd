"""dropout_impact.{json,md,html}: the plain-language answer first, then claim by claim.

The answer's sentences are assembled from the measured numbers (with conditions where the
outcome could differ), never written ahead. Each of the twelve entries holds the claim, its
computed verdict and explanation, the numbers behind it and, for the measurement groups, the
full measurement as `details`. The HTML is one self-contained file (plots as data URIs, no
external URL); the Markdown links the PNGs that sit beside it in the run folder.

    json_path = write_reports(run_dir, measurements, entries, figures, timings)
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from inception_retrain.dropout import sweep as sweep_lib
from inception_retrain.dropout.verdicts import VERDICTS, plural
from inception_retrain.files import atomic_write
from inception_retrain.reports import render
from inception_retrain.schemas import write_document

KIND, VERSION, FILE_NAME = "dropout-impact", 1, "dropout_impact.json"
TITLE = "Which layers does Dropout affect? Dropout-impact report"
QUESTION = (
    "A frozen InceptionV3 (cut at mixed7) feeds Flatten, Dense(512), Dense(1024), Dropout(0.2) "
    "and a Dense output. Which layers does this Dropout affect: the whole network including "
    "the frozen layers, only the new layers, or only Dense(1024)? Whose neurons are switched "
    "off in each epoch?"
)
FIGURES_FOR = {
    "C1": ("sweep_summary",),
    "C5": ("mask_histogram",),
    "F1": ("forward_layers", "mask_steps", "mask_histogram"),
    "F2": ("gradient_norms",),
    "F4": ("mc_uncertainty",),
    "F5": ("sweep_curves", "sweep_summary"),
}
DETAILS_FOR = {
    "C2": ("activation_order",),
    "C7": ("noise_shapes",),
    "F1": ("forward", "fit_masks"),
    "F2": ("backward",),
    "F3": ("frozen", "cache_facts"),
    "F4": ("inference",),
    "F5": ("sweep",),
}


def plain(value):
    """JSON-safe copy: numpy scalars/arrays to Python, NaN and infinities to None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _pct(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}g}%"


def _num(value, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _layer_label(name: str, context: dict) -> str:
    units = context.get("hidden_units", (512, 1024))
    labels = {"hidden_1": f"Dense({units[0]})", "hidden_2": f"Dense({units[1]})"}
    return labels.get(name, name)


def _answer_forward(m: dict) -> str:
    forward, context = m["forward"], m["context"]
    main = forward["dropouts"][-1]
    head_rows = [row for row in forward["layers"] if row["kind"] == "head"]
    names = [row["layer"] for row in head_rows]
    before = names[: names.index(forward["first_dropout"])]
    unchanged_head = [
        _layer_label(row["layer"], context)
        for row in head_rows
        if row["layer"] in before and not row["changed"]
    ]
    intro = f"This model has Dropout({main['rate']}) {context['placement_text']}."
    if context.get("inserted"):
        intro = (
            f"This run trained without dropout, so the measurements insert the seed's "
            f"Dropout({main['rate']}) after {_layer_label('hidden_2', context)} into the "
            f"trained head (Dropout has no weights)."
        )
    touched = ", ".join(_layer_label(n, context) for n in forward["touched"])
    if forward["backbone_layers_changed"] == 0:
        same = ", ".join(
            [f"all {forward['n_backbone_layers']} frozen backbone layers"] + unchanged_head
        )
        text = (
            f"Short answer: Dropout switches off outputs of the layer right before it, and the "
            f"only layers whose output changes are Dropout and the layers after it. {intro} "
            f"Running all {forward['n_layers']} layers of the full model on "
            f"{forward['images']} real images of this run with training on and off, {same} gave "
            f"bitwise identical outputs (max |Δ| = 0); only {touched} differed."
        )
    else:
        text = (
            f"{intro} The frozen backbone is affected here: {forward['backbone_layers_changed']} "
            f"of its {forward['n_backbone_layers']} layers give different outputs with training "
            f"on and off; layers that differ: {touched}."
        )
    if len(forward["dropouts"]) > 1:
        text += (
            f" With one Dropout after each Dense layer, {_layer_label('hidden_2', context)} "
            f"changes too, because {forward['first_dropout']} comes before it."
        )
    return text


def _answer_masks(m: dict) -> str:
    masks = m["fit_masks"]
    scale = m["forward"]["dropouts"][-1]["scaling"]["expected_factor"]
    fresh = masks["identical_consecutive_steps"] == 0 and masks["steps"] > 1
    when = (
        "is drawn anew for every sample at every training step, not once per epoch"
        if fresh and masks["samples_sharing_a_mask_within_a_step"] == 0
        else "was NOT redrawn for every sample and step"
    )
    return (
        f"Which units are switched off {when}: over the {masks['steps']} steps of a real fit "
        f"epoch, {masks['distinct_step_masks']} different masks were drawn "
        f"({_pct(masks['fraction_changed_between_steps'])} of the units flip between consecutive "
        f"steps) and {masks['samples_sharing_a_mask_within_a_step']} samples shared a mask within "
        f"a step. Each sample loses on average {_pct(masks['dropped_mean'] / masks['units'])} of "
        f"the {masks['units']} outputs ({masks['dropped_min']} to {masks['dropped_max']} per "
        f"sample, as Binomial({masks['units']}, {masks['rate']})), and the kept outputs are "
        f"multiplied by exactly {_num(scale, 6)}."
    )


def _answer_backward(m: dict) -> str:
    backward, frozen = m["backward"], m["frozen"]
    check = backward["dropped_columns"][-1]
    rows = {row["variable"]: row for row in backward["variables"]}
    change = rows.get("hidden_1/kernel", {}).get("relative_change")
    text = (
        f"Through backpropagation every trainable layer is affected: for one sample, the "
        f"dropped units' weight columns and biases in {_layer_label(check['dense'], m['context'])} "
        f"get a gradient of exactly 0 "
        f"(max |g| = {_num(check['max_abs_gradient_dropped_kernel_columns'])} "
        f"over {check['dropped_units_total']} dropped units in {check['samples']} samples), and "
        f"{_layer_label('hidden_1', m['context'])}'s gradient changes ({_pct(change)} relative "
        f"difference with vs without "
        f"dropout). With Dropout(rate=1) no gradient at all reaches the layers before it "
        f"(largest norm {_num(backward['rate_1_max_norm_before_last_dropout'])})."
    )
    if frozen["backbone_variables_changed"] == 0:
        text += (
            f" The frozen backbone is not affected: it has "
            f"{frozen['backbone_trainable_variables']} trainable variables, and after "
            f"{frozen['fit_steps']} real training steps of the seed's full model all "
            f"{frozen['backbone_variables']} of its variables, including "
            f"{frozen['batchnorm_moving_statistics']} BatchNorm moving statistics, were bitwise "
            f"unchanged."
        )
    else:
        text += (
            f" The backbone is NOT frozen: {frozen['backbone_variables_changed']} of its "
            f"{frozen['backbone_variables']} variables changed in {frozen['fit_steps']} steps."
        )
    return text


def _answer_inference_sweep(m: dict) -> str:
    inference, summary = m["inference"], m["sweep"]
    auroc = inference["auroc_std"]
    identity = inference["deterministic_bitwise"] and all(
        d["max_abs_delta"] == 0.0 for d in inference["dropout_identity"]
    )
    text = (
        "At inference (training=False) Dropout does nothing: repeated predictions are bitwise "
        "identical. "
        if identity
        else "At inference (training=False) the predictions were NOT deterministic. "
    )
    text += (
        f"Kept on at inference (MC dropout, {inference['passes']} passes) it gives an uncertainty "
        f"per image: {inference['errors']} of {inference['images']} {m['context']['mc_split']} "
        f"images were misclassified"
        + (
            f"; AUROC of the uncertainty for spotting them: {auroc:.3f}."
            if auroc is not None
            else "."
        )
    )
    split = summary["selection_split"]
    best = max(summary["configs"], key=lambda r: r[f"{split}_accuracy"]["mean"] or -1.0)
    none = sweep_lib.find(summary, *sweep_lib.NO_DROPOUT)
    text += (
        f" On this data the sweep ({len(summary['grid'])} grid cells, {summary['trainings']} "
        f"trainings of {plural(summary['epochs'], 'epoch')}, "
        f"{plural(len(summary['seeds']), 'seed')} each) reached "
        f"its best {split} accuracy {_num(best[f'{split}_accuracy']['mean'], 3)} with rate "
        f"{best['rate']} ({best['placement']}); without dropout "
        f"{_num(none[f'{split}_accuracy']['mean'], 3)}."
    )
    if not summary.get("beats_majority", True):
        text += (
            f" No configuration beat always predicting the majority class "
            f"({_num(summary.get('majority_accuracy'), 3)}), so on this data the sweep cannot "
            f"rank them."
        )
    return text


def answer(measurements: dict, entries: list[dict]) -> list[str]:
    """The plain-language answer, a few paragraphs built from the numbers."""
    counts = Counter(entry["verdict"] for entry in entries)
    tally = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])
    return [
        _answer_forward(measurements),
        _answer_masks(measurements),
        _answer_backward(measurements),
        _answer_inference_sweep(measurements),
        f"Verdicts on the {len(entries)} claims below: {tally}.",
    ]


def build_document(measurements: dict, entries: list[dict], figures: dict, timings: dict) -> dict:
    claims = []
    for entry in entries:
        item = dict(entry)
        item["figures"] = [figures[name].name for name in FIGURES_FOR.get(entry["id"], ())]
        details = {key: measurements[key] for key in DETAILS_FOR.get(entry["id"], ())}
        if details:
            item["details"] = details
        claims.append(item)
    return plain(
        {
            "title": TITLE,
            "question": QUESTION,
            "answer": answer(measurements, entries),
            "verdict_counts": dict(Counter(entry["verdict"] for entry in entries)),
            "run": measurements["context"],
            "claims": claims,
            "sweep_cache": measurements["sweep"].get("cache"),
            "timings_seconds": timings,
        }
    )


def _scalar_rows(numbers: dict) -> list[tuple[str, str]]:
    rows = []
    for key, value in numbers.items():
        if isinstance(value, dict | list):
            text = json.dumps(value)
            rows.append((key, text if len(text) <= 300 else text[:297] + "..."))
        else:
            rows.append((key, _num(value, 6)))
    return rows


def _sweep_rows(summary: dict) -> tuple[list[dict], list[str]]:
    split = summary["selection_split"]

    def stat(row, key):
        value = row[key]
        if value["mean"] is None:
            return "n/a"
        return f"{value['mean']:.3f} ± {value['std']:.3f}"

    columns = [
        "rate",
        "placement",
        "cells",
        "seeds",
        f"{split} acc",
        f"{split} loss",
        "test acc",
        "test loss",
        "train acc",
        "gap acc",
    ]
    rows = []
    for row in summary["configs"]:
        cells = [
            f"{c['rate']}/{c['placement']}"
            for c in summary["grid"]
            if (c["effective_rate"], c["effective_placement"]) == (row["rate"], row["placement"])
        ]
        rows.append(
            {
                "rate": row["rate"],
                "placement": row["placement"],
                "cells": ", ".join(cells),
                "seeds": row["seeds"],
                f"{split} acc": stat(row, f"{split}_accuracy"),
                f"{split} loss": stat(row, f"{split}_loss"),
                "test acc": stat(row, "test_accuracy"),
                "test loss": stat(row, "test_loss"),
                "train acc": stat(row, "train_accuracy"),
                "gap acc": stat(row, "gap_accuracy"),
            }
        )
    return rows, columns


def sweep_cache_text(summary: dict) -> str:
    """How many sweep trainings ran in this run and how many came from the sweep cache."""
    cache = summary.get("cache")
    if cache is None:
        return ""
    total = plural(summary["trainings"], "sweep training")
    if cache["dir"] is None:
        return f"{total}, all trained in this run (no WORKDIR known: no sweep cache)."
    return (
        f"{total}: {cache['computed']} trained in this run, {cache['reused']} reused from the "
        f"sweep cache {cache['dir']} (the stored results of the same trainings on the same "
        f"data; training is deterministic)."
    )


_LAYER_COLUMNS = ["layer", "kind", "shape", "max_abs_delta", "fraction_changed", "changed"]
_VERDICT_COLUMNS = ["id", "verdict", "claim"]


def _verdict_rows(document: dict) -> list[dict]:
    return [
        {"id": c["id"], "verdict": c["verdict"], "claim": c["claim"]} for c in document["claims"]
    ]


def _context(document: dict, run_dir: Path) -> dict:
    """What the dropout_impact templates are filled with."""
    claims = []
    for claim in document["claims"]:
        item = {**claim, "number_rows": _scalar_rows(claim["numbers"]), "sweep": None,
                "layers": None, "head_layers": None}  # fmt: skip
        if claim["id"] == "F5":
            rows, columns = _sweep_rows(claim["details"]["sweep"])
            item["sweep"] = {"rows": rows, "columns": columns,
                             "cache": sweep_cache_text(claim["details"]["sweep"])}  # fmt: skip
        if claim["id"] == "F1":
            layers = claim["details"]["forward"]["layers"]
            item["layers"] = layers
            item["head_layers"] = [row for row in layers if row["kind"] == "head"]
        claims.append(item)
    run = document["run"]
    return {
        "title": document["title"],
        "document": document,
        "claims": claims,
        "run_dir": Path(run_dir),
        "random_weights": run.get("weights_description") if run.get("random_weights") else "",
        "verdict_rows": _verdict_rows(document),
        "verdict_columns": _VERDICT_COLUMNS,
        "layer_columns": _LAYER_COLUMNS,
        "timing_rows": _scalar_rows(document["timings_seconds"]),
    }


def write_reports(
    run_dir: Path, measurements: dict, entries: list[dict], figures: dict, timings: dict
) -> Path:
    """Write dropout_impact.json, .md and .html into `run_dir`; returns the JSON's path."""
    run_dir = Path(run_dir)
    document = build_document(measurements, entries, figures, timings)
    context = _context(document, run_dir)
    atomic_write(run_dir / "dropout_impact.md", render("dropout_impact.md.j2", **context))
    atomic_write(run_dir / "dropout_impact.html", render("dropout_impact.html.j2", **context))
    return write_document(run_dir / FILE_NAME, KIND, VERSION, document)
