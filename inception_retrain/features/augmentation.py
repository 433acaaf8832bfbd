"""Augmented views: deterministic variations of a training image, each one a cached row.

A frozen backbone's features can be cached only if the backbone sees the same image every
time. So instead of a fresh random distortion every epoch, each training image gets K fixed
*views*, computed once through the backbone and cached like the original; training then draws
one of the K + 1 rows per image each epoch (`training_data`). View 0 is the original.

A view is a pure function of (image content, view index, policy): its random draws come from
a generator seeded by sha256(content id, view index, policy fingerprint), so the same view is
the same pixels in every run, on every machine and worker, and a policy change gives new views
(a new fingerprint) while the old ones stay in the cache until `cache prune`.

The policy (`AugmentPolicy`) is what Keras's preprocessing layers do, drawn per view:
  * horizontal flip with probability 1/2 (RandomFlip("horizontal"));
  * rotation, zoom and translation as one affine transform about the image centre,
    bilinear and reflect-filled, through `keras.ops.image.affine_transform`, the op behind
    RandomRotation, RandomZoom and RandomTranslation;
  * contrast as RandomContrast does it: (x - mean) * factor + mean per channel, clipped to
    [0, 255].
It applies to the resized image in [0, 255], before InceptionV3's scaling to [-1, 1]
(`preprocess.augmented_dataset`).

    >>> policy = AugmentPolicy()
    >>> view = view_params("3f2a...", view=1, policy=policy)
    >>> view.transform(size=150)   # 8 projective-transform numbers, output -> input
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from inception_retrain.plumbing.files import sha256_json

# Bump when the way a view is drawn or applied changes: it is part of the fingerprint.
VIEW_VERSION = 1
# The most views per image a run may ask for: the train split's cache grows K + 1 times.
MAX_VIEWS = 32
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)


class AugmentPolicy(BaseModel):
    """Ranges of the random distortions of a view (each drawn uniformly in its range)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    horizontal_flip: bool = Field(True, description="Mirror left-right with probability 1/2.")
    rotation_degrees: float = Field(15.0, ge=0.0, le=180.0, description="Largest rotation.")
    zoom: float = Field(0.15, ge=0.0, lt=1.0, description="Largest relative zoom in or out.")
    translation: float = Field(
        0.1, ge=0.0, le=0.5, description="Largest shift, as a fraction of the image side."
    )
    contrast: float = Field(0.2, ge=0.0, lt=1.0, description="Largest relative change of contrast.")

    def fingerprint(self) -> str:
        """16 hex digits naming the policy and the view code (cached views are keyed by it)."""
        return sha256_json({"view_version": VIEW_VERSION, **self.model_dump()})[:16]

    def record(self) -> dict:
        """What view parts and policy.json record: {"fingerprint", "policy"}."""
        return {"fingerprint": self.fingerprint(), "policy": self.model_dump(mode="json")}


@dataclass(frozen=True)
class ViewParams:
    """What one view draws: a mirror, an angle (radians), a zoom factor (> 1 magnifies), a
    shift (fractions of the side) and a contrast factor."""

    flip: bool
    angle: float
    zoom: float
    shift_x: float
    shift_y: float
    contrast: float

    def transform(self, size: int) -> tuple[float, ...]:
        """The projective transform for `keras.ops.image.affine_transform`: it maps an
        output pixel (x, y) to the input pixel it is sampled from."""
        centre = (size - 1) / 2.0
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        # forward (input -> output): mirror, rotate, zoom about the centre, then shift;
        # the op wants the inverse: undo the zoom, the rotation, then the mirror.
        mirror = -1.0 if self.flip else 1.0
        inverse = np.array([[mirror * cos, mirror * sin], [-sin, cos]]) / self.zoom
        shifted_centre = np.array([centre + self.shift_x * size, centre + self.shift_y * size])
        offset = np.array([centre, centre]) - inverse @ shifted_centre
        a0, a1 = inverse[0]
        b0, b1 = inverse[1]
        return (a0, a1, offset[0], b0, b1, offset[1], 0.0, 0.0)


ORIGINAL = ViewParams(flip=False, angle=0.0, zoom=1.0, shift_x=0.0, shift_y=0.0, contrast=1.0)


def view_params(content_id: str, view: int, policy: AugmentPolicy) -> ViewParams:
    """The draws of view `view` (0: the original image) of the image `content_id`."""
    if view == 0:
        return ORIGINAL
    key = f"{content_id}:{view}:{policy.fingerprint()}".encode()
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))
    flip, angle, zoom, shift_x, shift_y, contrast = rng.random(6)

    def spread(u: float, half_width: float) -> float:  # uniform in [-half_width, half_width]
        return (2.0 * u - 1.0) * half_width

    return ViewParams(
        flip=bool(policy.horizontal_flip and flip < 0.5),
        angle=math.radians(spread(angle, policy.rotation_degrees)),
        zoom=1.0 + spread(zoom, policy.zoom),
        shift_x=spread(shift_x, policy.translation),
        shift_y=spread(shift_y, policy.translation),
        contrast=1.0 + spread(contrast, policy.contrast),
    )


def apply_view(images, transforms, contrasts):
    """Views of a batch of resized images in [0, 255] (B, H, W, 3): `transforms` (B, 8) from
    `ViewParams.transform`, `contrasts` (B,). Runs in TensorFlow (inside tf.data or a
    model); the identity transform and contrast 1 give the images back (up to float
    rounding of the contrast step: the original, view 0, is never passed through here)."""
    import keras

    moved = keras.ops.image.affine_transform(
        images, transforms, interpolation="bilinear", fill_mode="reflect"
    )
    mean = keras.ops.mean(moved, axis=(1, 2), keepdims=True)
    factor = keras.ops.reshape(contrasts, (-1, 1, 1, 1))
    return keras.ops.clip((moved - mean) * factor + mean, 0.0, 255.0)


def view_arrays(
    content_ids: Sequence[str], views: Sequence[int], policy: AugmentPolicy, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(transforms (n, 8), contrasts (n,)) of view `views[i]` of image `content_ids[i]`, for
    `apply_view` (and `preprocess.augmented_dataset`) on images of `size` pixels."""
    pairs = zip(content_ids, views, strict=True)
    params = [view_params(cid, int(view), policy) for cid, view in pairs]
    transforms = np.array([p.transform(size) for p in params], np.float32).reshape(-1, 8)
    return transforms, np.array([p.contrast for p in params], np.float32)


def keras_layers(policy: AugmentPolicy, seed: int | None = None) -> list:
    """Keras's own random preprocessing layers for `policy`, for images in [0, 255]: the
    end-to-end way, which draws new distortions on every training step instead of caching
    K views (bench/augment.py times it against the views). Ranges match the policy's; the
    draws differ in kind only where Keras's layers do (RandomZoom zooms each axis apart)."""
    import keras

    layers = keras.layers
    chosen = []
    if policy.horizontal_flip:
        chosen.append(layers.RandomFlip("horizontal", seed=seed))
    if policy.rotation_degrees:
        chosen.append(layers.RandomRotation(policy.rotation_degrees / 360.0, seed=seed))
    if policy.zoom:
        chosen.append(layers.RandomZoom((-policy.zoom, policy.zoom), seed=seed))
    if policy.translation:
        shift = policy.translation
        chosen.append(layers.RandomTranslation(shift, shift, seed=seed))
    if policy.contrast:
        chosen.append(layers.RandomContrast(policy.contrast, value_range=(0, 255), seed=seed))
    return chosen
