"""The data contract, checked on the manifests before anything is extracted or trained.

`validate_data(manifest, reference, spec, run_dir)` compares this run's manifest with the
reference's (`DataReference`: the champion's training data, or the previous accepted run's):

  * rules (kind "rule"; flagged when broken): a class of the reference is missing
    (`class-missing`), a class is new (`class-added`), a class has fewer valid images than
    the contract's minimum (`class-size`, checked on the first run too), content ids
    labelled otherwise than in the reference (`label-conflict`; conflicts within one run are
    ingest's `duplicate-conflicting-label`);
  * distributions (statistical; p-values from `distribution_tests`): the class mix
    (`class-balance`), and the image properties ingest records, `short-side`,
    `aspect-ratio` (log of width / height), `format`, `mode` and `brightness`.

The distributions compare the **new images** (this run's valid images whose content id the
reference's manifest does not have, all splits) with the **reference images** (the
reference's training split): the same two groups the feature drift test uses
(`compare_with`), each capped at `spec.max_images` by a seeded subsample. An image in both
is evidence of nothing, so it is in neither.

Severities come from the contract (`DataContract`): a broken rule whose severity is `block`
makes the validation `blocked`, with one line per finding; the flow then writes the data
report and stops the run before extraction. Statistical checks get only raw p-values here:
they are flagged after Holm over the whole family, features included, once the drift test
has run (`evaluation.data_report`), and a flagged one whose severity is `block` stops the run
there, still before training. A reference manifest of schema version 2 has no mode,
brightness or source: those checks say "not comparable".

Writes `data_validation.json` (every check, with its permutation null distribution).

    >>> validation = validate_data(manifest, reference, DataCheckSpec(), run_dir)
    >>> validation.blocked, validation.blocking
    (True, ["class-missing: class 'cows' of the reference has no valid image (it had 40)"])
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from inception_retrain.data.contract_spec import DataCheckSpec
from inception_retrain.data.data_reference import DataReference
from inception_retrain.data.distribution_tests import (
    NO_REFERENCE,
    NOT_COMPARABLE,
    OFF,
    TESTED,
    Check,
    blas_threads,
    categorical_test,
    check_rng,
    ks_test,
)
from inception_retrain.data.manifest import ImageProperties, Manifest, read_properties
from inception_retrain.plumbing.schemas import read_document, write_document

KIND, VERSION, FILE_NAME = "data-validation", 1, "data_validation.json"
PROPERTY_CHECKS = ("short-side", "aspect-ratio", "format", "mode", "brightness")
RULES = ("class-missing", "class-added", "class-size", "label-conflict")
CONFLICTS_LISTED = 50


class DataValidation(BaseModel):
    """What validation found, as the stage hands it on: its JSON document and the one-line
    findings that block the run (empty: go on)."""

    json_path: Path
    reference: DataReference | None
    blocking: list[str]
    flagged: list[str]  # names of the broken rules, blocking or not

    @property
    def blocked(self) -> bool:
        return bool(self.blocking)

    def summary(self) -> dict:
        """What status.json records until the drift test has run (the data report's
        `summary`, with the rules alone: drift "not-run")."""
        return {
            "anomalies": len(self.flagged),
            "flagged": list(self.flagged),
            "blocked": self.blocked,
            "drift": "not-run",
            "reference": self.reference.describe() if self.reference else None,
        }

    @property
    def run_dir(self) -> Path:
        return self.json_path.parent


@dataclass
class Comparison:
    """The two groups the distribution and drift checks compare, and everything around."""

    current: ImageProperties  # this run's valid images
    reference_all: ImageProperties | None  # the reference's valid images (all splits)
    reference: ImageProperties | None  # the reference images: its training split, capped
    new: ImageProperties  # this run's images the reference does not have, capped
    n_new_total: int  # before the cap
    n_reference_total: int


def capped(rows: ImageProperties, limit: int, seed: int, name: str) -> ImageProperties:
    """`rows` or, if there are more than `limit`, a seeded subsample of them (in order)."""
    if len(rows) <= limit:
        return rows
    keep = np.zeros(len(rows), dtype=bool)
    keep[check_rng(seed, f"subsample:{name}").choice(len(rows), limit, replace=False)] = True
    return rows.where(keep.tolist())


def compare_with(
    manifest_path: Path, reference: DataReference | None, spec: DataCheckSpec
) -> Comparison:
    """This run's manifest against the reference's (see the module docstring)."""
    current = read_properties(manifest_path)
    if reference is None:
        return Comparison(current, None, None, current, len(current), 0)
    reference_all = read_properties(reference.manifest_path)
    known = set(reference_all.rows.content_ids)
    new = current.where([cid not in known for cid in current.rows.content_ids])
    train = reference_all.where([s == "train" for s in reference_all.rows.splits])
    return Comparison(
        current=current,
        reference_all=reference_all,
        reference=capped(train, spec.max_images, spec.seed, "reference"),
        new=capped(new, spec.max_images, spec.seed, "new"),
        n_new_total=len(new),
        n_reference_total=len(train),
    )


# --- rules -----------------------------------------------------------------------------------


def _rule(name: str, found: list[str], statistic: int, detail: dict) -> Check:
    """A rule's record: its statistic is a count (classes, images)."""
    return Check(
        name,
        "rule",
        TESTED,
        statistic=int(statistic),
        flagged=bool(found),
        message="; ".join(found) if found else "none",
        detail=detail,
    )


def _class_rules(comparison: Comparison, spec: DataCheckSpec) -> list[Check]:
    counts = Counter(comparison.current.rows.labels)
    checks = []
    if comparison.reference_all is None:
        for name in ("class-missing", "class-added"):
            checks.append(Check(name, "rule", NO_REFERENCE, message="no reference"))
    else:
        before = Counter(comparison.reference_all.rows.labels)
        missing = sorted(set(before) - set(counts))
        added = sorted(set(counts) - set(before))
        checks.append(
            _rule(
                "class-missing",
                [
                    f"class '{c}' of the reference has no valid image (it had {before[c]})"
                    for c in missing
                ],
                len(missing),
                {"classes": missing},
            )
        )
        checks.append(
            _rule(
                "class-added",
                [f"class '{c}' is new ({counts[c]} images)" for c in added],
                len(added),
                {"classes": added},
            )
        )
    minimum = spec.contract.min_images_per_class
    small = sorted(c for c, n in counts.items() if n < minimum)
    checks.append(
        _rule(
            "class-size",
            [f"class '{c}' has {counts[c]} valid images, fewer than {minimum}" for c in small],
            min(counts.values(), default=0),
            {"per_class": dict(sorted(counts.items())), "minimum": minimum, "classes": small},
        )
    )
    return checks


def _label_conflicts(comparison: Comparison) -> Check:
    if comparison.reference_all is None:
        return Check("label-conflict", "rule", NO_REFERENCE, message="no reference")
    before = comparison.reference_all.rows
    label_of = dict(zip(before.content_ids, before.labels, strict=True))
    rows = comparison.current.rows
    conflicts = [
        {"content_id": cid, "reference": label_of[cid], "now": label, "uri": uri}
        for cid, label, uri in zip(rows.content_ids, rows.labels, rows.uris, strict=True)
        if cid in label_of and label_of[cid] != label
    ]
    found = []
    if conflicts:
        first = conflicts[0]
        found.append(
            f"{len(conflicts)} images labelled otherwise than in the reference (e.g. "
            f"{Path(first['uri']).name}: {first['reference']} -> {first['now']})"
        )
    return _rule(
        "label-conflict",
        found,
        len(conflicts),
        {"conflicts": conflicts[:CONFLICTS_LISTED], "count": len(conflicts)},
    )


# --- distributions ---------------------------------------------------------------------------


def property_values(rows: ImageProperties, check: str) -> list | None:
    """The per-image values a property check compares (None: the manifest lacks them)."""
    if check in ("short-side", "aspect-ratio"):
        width = np.asarray(rows.width, dtype=np.float64)
        height = np.asarray(rows.height, dtype=np.float64)
        if check == "short-side":
            return np.minimum(width, height).tolist()
        return np.log(width / height).tolist()
    if not rows.has(check):
        return None
    values = getattr(rows, check)
    if check == "brightness" and any(v is None or not math.isfinite(v) for v in values):
        return None
    return values


def _distribution_checks(
    comparison: Comparison, spec: DataCheckSpec, names: list[str]
) -> list[Check]:
    if comparison.reference is None:
        return [
            Check(n, "class-balance" if n == "class-balance" else "property", NO_REFERENCE)
            for n in names
        ]
    reference, new = comparison.reference, comparison.new
    settings = {
        "permutations": spec.permutations,
        "seed": spec.seed,
        "min_new": spec.min_new,
        "min_reference": spec.min_reference,
    }
    checks = []
    if "class-balance" in names:
        checks.append(
            categorical_test(
                reference.rows.labels, new.rows.labels, "class-balance", "class-balance", **settings
            )
        )
    for name in (n for n in PROPERTY_CHECKS if n in names):
        before, after = property_values(reference, name), property_values(new, name)
        if before is None or after is None:
            which = "the reference's" if before is None else "this run's"
            checks.append(
                Check(
                    name,
                    "property",
                    NOT_COMPARABLE,
                    len(reference),
                    len(new),
                    message=f"not comparable: {which} manifest does not record it "
                    f"(schema version {reference.version if before is None else new.version})",
                )
            )
        elif name in ("format", "mode"):
            checks.append(categorical_test(before, after, name, "property", **settings))
        else:
            checks.append(ks_test(before, after, name, **settings))
    return checks


def validate_data(
    manifest: Manifest, reference: DataReference | None, spec: DataCheckSpec, run_dir: Path
) -> DataValidation:
    """Check the contract (see the module docstring); write data_validation.json."""
    comparison = compare_with(manifest.path, reference, spec)
    contract = spec.contract
    checks = [*_class_rules(comparison, spec), _label_conflicts(comparison)]
    wanted = [n for n in ("class-balance", *PROPERTY_CHECKS) if contract.severity(n) != "off"]
    with blas_threads(1):
        checks.extend(_distribution_checks(comparison, spec, wanted))
    for check in checks:
        check.severity = contract.severity(check.name)
        if check.kind == "rule":
            if check.severity == "off":
                check.status, check.flagged, check.message = OFF, False, "off"
            check.blocking = check.flagged and check.severity == "block"
    checks.extend(
        Check(n, "property" if n != "class-balance" else n, OFF, severity="off", message="off")
        for n in ("class-balance", *PROPERTY_CHECKS)
        if n not in wanted
    )
    blocking = [f"{c.name}: {c.message}" for c in checks if c.blocking]
    document = {
        "reference": reference.model_dump(mode="json") if reference else None,
        "spec": spec.model_dump(mode="json"),
        "n_current": len(comparison.current),
        "n_new": comparison.n_new_total,
        "n_new_tested": len(comparison.new),
        "n_reference": comparison.n_reference_total,
        "n_reference_tested": len(comparison.reference or ()),
        "checks": [c.to_dict(with_arrays=True) for c in checks],
    }
    path = write_document(Path(run_dir) / FILE_NAME, KIND, VERSION, document)
    return DataValidation(
        json_path=path,
        reference=reference,
        blocking=blocking,
        flagged=[c.name for c in checks if c.kind == "rule" and c.flagged],
    )


def read_validation(path: Path) -> tuple[dict, list[Check]]:
    """(data_validation.json's document, its checks)."""
    document = read_document(path, KIND, VERSION)
    return document, [Check.from_dict(record) for record in document["checks"]]
