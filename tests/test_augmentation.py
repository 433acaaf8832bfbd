"""Augmented views: deterministic draws per (image, view, policy), and the transform they
apply does what it says (a mirror mirrors, a shift shifts, a quarter turn turns)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inception_retrain.features.augmentation import (
    IDENTITY,
    ORIGINAL,
    AugmentPolicy,
    ViewParams,
    apply_view,
    view_params,
)

CONTENT = "ab" * 32


def test_a_view_is_a_pure_function_of_content_view_and_policy():
    policy = AugmentPolicy()
    assert view_params(CONTENT, 1, policy) == view_params(CONTENT, 1, AugmentPolicy())
    assert view_params(CONTENT, 0, policy) == ORIGINAL
    draws = {view_params(CONTENT, k, policy) for k in range(1, 9)}
    assert len(draws) == 8  # every view its own
    assert view_params("cd" * 32, 1, policy) != view_params(CONTENT, 1, policy)
    changed = AugmentPolicy(rotation_degrees=5.0)
    assert changed.fingerprint() != policy.fingerprint()
    assert view_params(CONTENT, 1, changed) != view_params(CONTENT, 1, policy)


def test_draws_stay_in_the_policy_ranges():
    policy = AugmentPolicy(rotation_degrees=10, zoom=0.1, translation=0.05, contrast=0.3)
    views = [view_params(f"{i:064x}", 1, policy) for i in range(300)]
    assert max(abs(v.angle) for v in views) <= math.radians(10)
    assert all(0.9 <= v.zoom <= 1.1 and abs(v.shift_x) <= 0.05 for v in views)
    assert all(0.7 <= v.contrast <= 1.3 for v in views)
    flips = sum(v.flip for v in views)
    assert 100 < flips < 200  # about half
    still = AugmentPolicy(
        horizontal_flip=False, rotation_degrees=0, zoom=0, translation=0, contrast=0
    )
    assert view_params(CONTENT, 3, still).transform(150) == pytest.approx(IDENTITY)


def _image(size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((1, size, size, 3)) * 255).astype(np.float32)


def _apply(image: np.ndarray, params: ViewParams) -> np.ndarray:
    transform = np.array([params.transform(image.shape[1])], np.float32)
    return np.asarray(apply_view(image, transform, np.array([params.contrast], np.float32)))


def test_the_transform_mirrors_shifts_and_turns_the_image():
    image = _image()
    same = _apply(image, ORIGINAL)
    np.testing.assert_allclose(same, image, atol=1e-3)
    mirrored = _apply(image, ViewParams(True, 0.0, 1.0, 0.0, 0.0, 1.0))
    np.testing.assert_allclose(mirrored, image[:, :, ::-1], atol=1e-3)
    shift = ViewParams(False, 0.0, 1.0, 2 / 16, 0.0, 1.0)  # two pixels to the right
    shifted = _apply(image, shift)
    np.testing.assert_allclose(shifted[:, :, 2:], image[:, :, :-2], atol=1e-3)
    turned = _apply(image, ViewParams(False, math.pi / 2, 1.0, 0.0, 0.0, 1.0))
    quarter = np.rot90(image, k=1, axes=(1, 2))
    assert np.allclose(turned, quarter, atol=1e-2) or np.allclose(
        turned, np.rot90(image, k=-1, axes=(1, 2)), atol=1e-2
    )


def test_contrast_scales_the_spread_about_the_mean_and_stays_in_range():
    image = _image()
    stronger = _apply(image, ViewParams(False, 0.0, 1.0, 0.0, 0.0, 1.5))
    assert stronger.min() >= 0.0 and stronger.max() <= 255.0
    assert stronger.std() > image.std() * 1.2
    weaker = _apply(image, ViewParams(False, 0.0, 1.0, 0.0, 0.0, 0.5))
    np.testing.assert_allclose(weaker.mean(axis=(1, 2)), image.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(weaker.std(axis=(1, 2)), image.std(axis=(1, 2)) * 0.5, rtol=1e-3)
