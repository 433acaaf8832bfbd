"""InceptionV3 preprocessing and the tf.data pipeline from image files to batches.

Semantics:
  * images are decoded by `inception_retrain.data.images.load_rgb` (Pillow, the same everywhere);
  * `preprocessing_layers(size)` resizes (bilinear) and maps [0, 255] to [-1, 1], which is
    exactly `keras.applications.inception_v3.preprocess_input` (x / 127.5 - 1) up to float
    rounding. They are plain Keras layers, so the exported `.keras` model carries them and
    loads in safe mode.
  * `image_dataset` is the tf.data pipeline: parallel decode, resize, rescale, batch, prefetch.
  * `augmented_dataset` is the same for augmented views (`inception_retrain.features.augmentation`):
    each image is decoded and resized once, then each of its views is distorted on the
    resized image in [0, 255] (`augmentation.apply_view`), then rescaled like an original.

    >>> ds = image_dataset(["a.jpg", "b.png"], size=150, batch_size=32)
    >>> next(iter(ds)).shape
    TensorShape([2, 150, 150, 3])
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from inception_retrain.data.images import load_rgb, load_rgb_verified
from inception_retrain.features.tf_data import without_autotune

MIN_IMAGE_SIZE = 75  # InceptionV3 needs at least 75x75 inputs
# Bump when decoding or preprocessing changes numerically: it is part of the backbone
# fingerprint, so features computed the old way are never reused.
PREPROCESS_VERSION = "pil-rgb-v2+bilinear+tf-scale"


def check_image_size(size: int) -> int:
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size {size} is below {MIN_IMAGE_SIZE}, InceptionV3's minimum")
    return size


def _usable_cores() -> int:
    """Cores this process may run on (its affinity; all cores where there is none, as on macOS)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def preprocessing_layers(size: int) -> list:
    """Resize and rescale layers: raw RGB in [0, 255] -> (size, size, 3) in [-1, 1]."""
    import keras

    check_image_size(size)
    return [
        keras.layers.Resizing(size, size, interpolation="bilinear", name="resize"),
        keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="inception_preprocess"),
    ]


def image_dataset(
    paths: Sequence[str],
    size: int,
    batch_size: int,
    parallel_calls: int | None = None,
    prefetch: int | None = None,
    content_ids: Sequence[str] | None = None,
):
    """tf.data pipeline from image files to preprocessed batches, in the order of `paths`.

    With `content_ids` (each file's sha256, as in the manifest) the elements are
    `(positions, images)`: a file that changed since ingestion or no longer decodes is
    dropped instead of failing the pipeline, and the missing positions say which.
    """
    import tensorflow as tf

    resize, rescale = preprocessing_layers(size)

    def preprocess(image):
        image.set_shape([None, None, 3])
        return rescale(resize(tf.cast(image, tf.float32)))

    def decode(path):
        return preprocess(tf.numpy_function(load_rgb, [path], tf.uint8, stateful=False))

    def decode_verified(position, path, content_id):
        image = tf.numpy_function(load_rgb_verified, [path, content_id], tf.uint8, stateful=False)
        return position, preprocess(image)

    # One decoder per usable core (each needs less than a core); autotuning is off.
    calls = parallel_calls or _usable_cores()
    if content_ids is None:
        dataset = tf.data.Dataset.from_tensor_slices(list(map(str, paths)))
        dataset = dataset.map(decode, num_parallel_calls=calls, deterministic=True)
    else:
        positions = np.arange(len(paths), dtype=np.int64)
        slices = (positions, list(map(str, paths)), list(content_ids))
        dataset = tf.data.Dataset.from_tensor_slices(slices)
        dataset = dataset.map(decode_verified, num_parallel_calls=calls, deterministic=True)
        dataset = dataset.ignore_errors()
    return without_autotune(dataset.batch(batch_size).prefetch(prefetch or 2))


def augmented_dataset(
    paths: Sequence[str],
    content_ids: Sequence[str],
    transforms: np.ndarray,
    contrasts: np.ndarray,
    size: int,
    batch_size: int,
    parallel_calls: int | None = None,
    prefetch: int | None = None,
):
    """tf.data pipeline of augmented views: one job per (file, view), in the given order,
    elements `(positions, images)` as `image_dataset`'s with `content_ids`.

    Job j distorts `paths[j]` by `transforms[j]` (the 8 numbers of
    `augmentation.ViewParams.transform(size)`) and `contrasts[j]`. Consecutive jobs of one
    file share one decode and resize. A file that changed since ingestion or no longer
    decodes drops all of its jobs, and the missing positions say which.
    """
    import tensorflow as tf

    from inception_retrain.features.augmentation import apply_view

    resize, rescale = preprocessing_layers(size)
    n = len(paths)
    starts = [j for j in range(n) if j == 0 or content_ids[j] != content_ids[j - 1]]
    counts = np.diff([*starts, n]).astype(np.int64)
    slices = (
        np.asarray(starts, np.int64),
        counts,
        [str(paths[j]) for j in starts],
        [content_ids[j] for j in starts],
    )
    transforms = tf.constant(np.asarray(transforms, np.float32).reshape(n, 8))
    contrasts = tf.constant(np.asarray(contrasts, np.float32).reshape(n))

    def decode_verified(start, count, path, content_id):
        image = tf.numpy_function(load_rgb_verified, [path, content_id], tf.uint8, stateful=False)
        image.set_shape([None, None, 3])
        return start, count, resize(tf.cast(image, tf.float32))

    def jobs_of(start, count, image):  # the image once per job, without copying it
        jobs = tf.data.Dataset.range(start, start + count)
        return tf.data.Dataset.zip((jobs, tf.data.Dataset.from_tensors(image).repeat(count)))

    def distort(jobs, images):
        moved = apply_view(images, tf.gather(transforms, jobs), tf.gather(contrasts, jobs))
        return jobs, rescale(moved)

    calls = parallel_calls or _usable_cores()
    dataset = tf.data.Dataset.from_tensor_slices(slices)
    dataset = dataset.map(decode_verified, num_parallel_calls=calls, deterministic=True)
    dataset = dataset.ignore_errors().flat_map(jobs_of).batch(batch_size).map(distort)
    return without_autotune(dataset.prefetch(prefetch or 2))
