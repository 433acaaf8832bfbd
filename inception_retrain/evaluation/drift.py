"""Drift of the new images on the cached mixed7 features: an MMD permutation test.

`check_drift(manifest, cache, validation, spec, run_dir)` tests the new images (this run's
valid images the reference's manifest does not have) against the reference images (the
champion's training images, or the previous accepted run's): the same two groups as the
contract's distribution checks (`data.contract.compare_with`). The features are the ones the
run already has: each image's cached 7x7x768 mixed7 map, averaged over positions to 768
values, read from the feature cache's parts (`feature_parts.iter_rows`), never from the
images. One test overall (`features:all`) and one per class (`features:<class>`).

The test (`mmd_test`; why this one, with the measurements, in docs/data-checks.md): unbiased
MMD^2 with a Gaussian kernel whose bandwidth is the median pairwise distance, computed in two
views of the pooled features, all channels standardised and the top 32 principal components
whitened, aggregated as the larger of the two standardised statistics over one shared set of
permutations. Standardisation, PCA and bandwidth are fitted on the pooled sample, so the
permutation p-value is exact. Each new image gets a score, the leave-one-out witness of the
view that drove the statistic (mean kernel to the other new images minus mean kernel to the
reference): high where new images crowd a region the reference leaves thin. The report shows
the highest as thumbnails, flagged or not.

Not comparable, and said so instead of guessed: a reference whose features came from another
backbone (its fingerprint differs: other weights, layer, image size or preprocessing), a
reference that extracted none, or one whose cached rows were pruned. Below `spec.min_new`
new images (overall, or of a class) or `spec.min_reference` reference images a test says
"too few to test". The raw p-values are Holm-adjusted with the contract's distribution checks
by `evaluation.data_report`.

Writes `data_drift.json` (the checks with their null distributions and per-image scores).

    >>> drift = check_drift(manifest, cache, validation, DataCheckSpec(), run_dir)
    >>> drift.comparable, drift.note
    (True, '')
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from inception_retrain.data.contract import DataValidation, compare_with
from inception_retrain.data.contract_spec import DataCheckSpec
from inception_retrain.data.distribution_tests import (
    NO_REFERENCE,
    NOT_COMPARABLE,
    OFF,
    TESTED,
    Check,
    blas_threads,
    check_rng,
    memberships,
    permutation_p_value,
    too_few,
)
from inception_retrain.data.manifest import Manifest
from inception_retrain.features import feature_cache, feature_parts
from inception_retrain.features.feature_cache import FeatureCache
from inception_retrain.plumbing.schemas import read_document, write_document

KIND, VERSION, FILE_NAME = "data-drift", 1, "data_drift.json"
# The two views of the pooled features the MMD test compares in: every standardised channel
# (sensitive to changes in the features' shape and spread, e.g. pixel noise) and the top 32
# principal components whitened (Mahalanobis-like: sensitive to a small shift along a
# direction the features hardly vary in, e.g. brightness x0.8).
VIEWS = ((None, False), (32, True))  # (principal components, whiten)
CHUNK = 256  # permutations per matrix product: bounded memory


class DriftResult(BaseModel):
    """What the drift test found, as the stage hands it on."""

    json_path: Path
    comparable: bool
    note: str  # why not comparable, or ""


# --- the test ----------------------------------------------------------------------------------


def pool(features: np.ndarray) -> np.ndarray:
    """(n, H, W, C) feature maps (or (n, ..., C)) -> (n, C) means over positions, float32."""
    features = np.asarray(features)
    axes = tuple(range(1, features.ndim - 1))
    return features.mean(axis=axes, dtype=np.float32) if axes else features.astype(np.float32)


def prepare(reference: np.ndarray, new: np.ndarray, pca: int | None, whiten: bool) -> np.ndarray:
    """The pooled sample (reference rows first), standardised with its own mean and standard
    deviation (constant features dropped), optionally on its top `pca` principal components
    (whitened: unit variance each). Fitted on the pooled sample, so the same whichever rows
    are called new: the permutation test stays exact."""
    z = np.vstack([reference, new]).astype(np.float64)
    z -= z.mean(axis=0)
    scale = z.std(axis=0)
    keep = scale > 1e-12 * max(1.0, float(scale.max(initial=0.0)))
    z = z[:, keep] / scale[keep]
    if pca:
        # eigenvectors of the N x N Gram matrix: cheaper than an SVD when N < channels
        values, vectors = np.linalg.eigh(z @ z.T)
        top = np.argsort(values)[::-1][: min(pca, len(z) - 1)]
        top = top[values[top] > 1e-9 * values[top[0]]]  # no null directions
        scaled = np.sqrt(len(z)) if whiten else np.sqrt(np.clip(values[top], 0, None))
        z = vectors[:, top] * scaled
    return z


def gaussian_kernel(z: np.ndarray) -> tuple[np.ndarray, float]:
    """(exp(-d^2 / (2 s^2)), s) with s the median pairwise distance (the median heuristic)."""
    squares = np.einsum("ij,ij->i", z, z)
    d2 = squares[:, None] + squares[None, :] - 2.0 * (z @ z.T)
    np.fill_diagonal(d2, 0.0)
    np.maximum(d2, 0.0, out=d2)
    upper = d2[np.triu_indices(len(z), k=1)]
    bandwidth = float(np.sqrt(np.median(upper))) if upper.size else 1.0
    bandwidth = bandwidth if bandwidth > 0 else 1.0
    return np.exp(-d2 / (2.0 * bandwidth**2)), bandwidth


def mmd2(kernel: np.ndarray, is_new: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 for each row of `is_new` ((B, N) or (N,) bool), from one kernel.

    With x, y the reference and new indicators: Sxx = x'Kx, Sxy = x'K1 - Sxx, Syy = 1'K1 -
    2 x'K1 + Sxx, the (unit) diagonal left out of Sxx and Syy. Only the (B, N) @ (N, N)
    product runs in the kernel's dtype (float32: half the cost; the observed labelling goes
    through the same arithmetic as the permuted ones, so the test stays exact).
    """
    is_new = np.atleast_2d(is_new)
    is_ref = (~is_new).astype(kernel.dtype)
    m = float(is_ref[0].sum())
    n = float(is_new.shape[1] - m)
    rows = kernel.sum(axis=1, dtype=np.float64)
    diag = np.diag(kernel).astype(np.float64)
    ref_rows = is_ref @ rows
    sxx = np.einsum("bi,bi->b", is_ref @ kernel, is_ref, dtype=np.float64)
    sxy = ref_rows - sxx
    syy = rows.sum() - 2.0 * ref_rows + sxx
    dx = is_ref @ diag
    dy = diag.sum() - dx
    return (sxx - dx) / (m * (m - 1)) + (syy - dy) / (n * (n - 1)) - 2.0 * sxy / (m * n)


def _view_name(view: tuple[int | None, bool]) -> str:
    pca, whiten = view
    return "standardised" if not pca else f"pca{pca}" + ("-whitened" if whiten else "")


def mmd_test(
    reference: np.ndarray,
    new: np.ndarray,
    name: str = "features:all",
    permutations: int = 999,
    seed: int = 0,
    min_new: int = 10,
    min_reference: int = 20,
    views: Sequence[tuple[int | None, bool]] = VIEWS,
) -> Check:
    """The aggregated MMD permutation test of pooled features (see the module docstring).

    With one view the statistic is its MMD^2; with several, the largest standardised MMD^2
    (each view standardised by the mean and standard deviation of its values over the
    observed labelling and every permutation), compared with the permutation distribution of
    that maximum. `scores`: one leave-one-out witness value per new image;
    `detail["reference_scores"]` the same for the reference images.
    """
    m, n = len(reference), len(new)
    early = too_few(name, "features", m, n, min_reference, min_new)
    if early:
        return early
    kernels, bandwidths = [], []
    for pca, whiten in views:
        kernel, bandwidth = gaussian_kernel(prepare(reference, new, pca, whiten))
        kernels.append(kernel.astype(np.float32))
        bandwidths.append(bandwidth)
    is_new = np.zeros(m + n, dtype=bool)
    is_new[m:] = True
    values = np.empty((len(views), permutations + 1))  # column 0: the observed labelling
    for k, kernel in enumerate(kernels):
        values[k, 0] = mmd2(kernel, is_new)[0]
    rng = check_rng(seed, name)
    for lo in range(0, permutations, CHUNK):
        size = min(CHUNK, permutations - lo)
        members = memberships(m, n, size, rng)
        for k, kernel in enumerate(kernels):
            values[k, 1 + lo : 1 + lo + size] = mmd2(kernel, members)
    view_p = [permutation_p_value(v[0], v[1:]) for v in values]
    if len(views) == 1:
        combined, best = values[0], 0
    else:
        spread = values.std(axis=1, keepdims=True)
        standardised = (values - values.mean(axis=1, keepdims=True)) / np.where(
            spread > 0, spread, 1.0
        )
        combined, best = standardised.max(axis=0), int(np.argmax(standardised[:, 0]))
    observed, null = float(combined[0]), combined[1:]
    kernel = kernels[best]
    to_new = kernel[:, m:].sum(axis=1, dtype=np.float64)
    to_ref = kernel[:, :m].sum(axis=1, dtype=np.float64)
    own = np.diag(kernel).astype(np.float64)
    witness_new = (to_new[m:] - own[m:]) / max(n - 1, 1) - to_ref[m:] / m
    witness_ref = to_new[:m] / n - (to_ref[:m] - own[:m]) / max(m - 1, 1)
    p_value = permutation_p_value(observed, null)
    return Check(
        name,
        "features",
        TESTED,
        m,
        n,
        statistic=observed,
        p_value=p_value,
        permutations=permutations,
        null=null,
        scores=witness_new,
        message=f"MMD^2 {values[best, 0]:.3g} in the {_view_name(views[best])} view",
        detail={
            "test": "mmd" if len(views) == 1 else "mmd-aggregated",
            "views": [_view_name(v) for v in views],
            "mmd2": values[:, 0].tolist(),
            "view_p_values": view_p,
            "bandwidths": bandwidths,
            "score_view": _view_name(views[best]),
            "reference_scores": witness_ref,
        },
    )


# --- the stage ---------------------------------------------------------------------------------


def pooled_features(cache_dir, content_ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(ids found, their pooled features (n, C) float32), in `content_ids`' order; ids
    without a cached row are left out. Streams the parts in their stored dtype."""
    wanted = dict.fromkeys(content_ids, 0)
    found: dict[str, np.ndarray] = {}
    for ids, values, _ in feature_parts.iter_rows(cache_dir, wanted, batch_rows=256, dtype=None):
        for cid, row in zip(ids, pool(values), strict=True):
            found[cid] = row
    kept = [cid for cid in content_ids if cid in found]
    channels = next(iter(found.values())).shape[0] if found else 0
    pooled = np.stack([found[cid] for cid in kept]) if kept else np.zeros((0, channels))
    return kept, pooled


def _not_tested(names: list[str], status: str, message: str) -> list[Check]:
    return [Check(name, "features", status, message=message) for name in names]


def _comparability(cache: FeatureCache, validation: DataValidation) -> str:
    reference = validation.reference
    if reference is None:
        return ""
    if reference.backbone_fingerprint is None:
        return f"not comparable: {reference.describe()} has no cached features"
    if reference.backbone_fingerprint != cache.backbone_fingerprint:
        return (
            f"not comparable: {reference.describe()} has features of another backbone "
            f"({reference.backbone_fingerprint[:12]}, this run {cache.backbone_fingerprint[:12]})"
        )
    return ""


def _feature_checks(cache_dir, comparison, classes: list[str], spec: DataCheckSpec):
    """(the overall and per-class tests, a note on missing reference rows)."""
    with feature_cache.reading(cache_dir):
        ref_ids, ref_x = pooled_features(cache_dir, comparison.reference.rows.content_ids)
        new_ids, new_x = pooled_features(cache_dir, comparison.new.rows.content_ids)
    missing = len(comparison.reference) - len(ref_ids)
    note = ""
    if missing:
        note = (
            f"{missing} of {len(comparison.reference)} reference images have no cached "
            "features (pruned?); tested on the others"
        )
    label_of = {}
    for rows in (comparison.reference.rows, comparison.new.rows):
        label_of.update(zip(rows.content_ids, rows.labels, strict=True))
    ref_labels = np.array([label_of[c] for c in ref_ids], dtype=object)
    new_labels = np.array([label_of[c] for c in new_ids], dtype=object)
    settings = {
        "permutations": spec.permutations,
        "seed": spec.seed,
        "min_new": spec.min_new,
        "min_reference": spec.min_reference,
    }
    with blas_threads(1):
        checks = [mmd_test(ref_x, new_x, "features:all", **settings)]
        checks[0].detail["new_ids"] = new_ids
        for name in classes:
            is_new = new_labels == name
            check = mmd_test(
                ref_x[ref_labels == name], new_x[is_new], f"features:{name}", **settings
            )
            check.detail["new_ids"] = [
                cid for cid, keep in zip(new_ids, is_new, strict=True) if keep
            ]
            checks.append(check)
    return checks, note


def check_drift(
    manifest: Manifest,
    cache: FeatureCache,
    validation: DataValidation,
    spec: DataCheckSpec,
    run_dir: Path,
) -> DriftResult:
    """Test the new images' cached features against the reference's (see the module
    docstring); write data_drift.json."""
    reference = validation.reference
    comparison = compare_with(manifest.path, reference, spec)
    classes = set(comparison.current.rows.labels)
    if comparison.reference_all is not None:
        classes |= set(comparison.reference_all.rows.labels)
    classes = sorted(classes)
    names = ["features:all", *(f"features:{c}" for c in classes)]
    note = _comparability(cache, validation)
    if spec.contract.features == "off":
        checks = _not_tested(names, OFF, "off")
    elif reference is None:
        checks = _not_tested(names, NO_REFERENCE, "no reference")
    elif note:
        checks = _not_tested(names, NOT_COMPARABLE, note)
    else:
        checks, note = _feature_checks(cache.cache_dir, comparison, classes, spec)
    for check in checks:
        check.severity = spec.contract.features
    document = {
        "reference": reference.model_dump(mode="json") if reference else None,
        "backbone_fingerprint": cache.backbone_fingerprint,
        "note": note,
        "checks": [c.to_dict(with_arrays=True) for c in checks],
    }
    path = write_document(Path(run_dir) / FILE_NAME, KIND, VERSION, document)
    comparable = reference is not None and not any(c.status == NOT_COMPARABLE for c in checks)
    return DriftResult(json_path=path, comparable=comparable, note=note)


def read_drift(path: Path) -> tuple[dict, list[Check]]:
    """(data_drift.json's document, its checks)."""
    document = read_document(path, KIND, VERSION)
    return document, [Check.from_dict(record) for record in document["checks"]]
