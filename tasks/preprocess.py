"""Image decoding and InceptionV3 preprocessing, shared by ingestion, extraction and serving.

Semantics:
  * `load_rgb` decodes any accepted file with Pillow into an RGB uint8 array, the same way
    everywhere: EXIF orientation applied; grayscale, palette, CMYK and 16-bit converted;
    alpha composited onto white (transparent pixels otherwise carry arbitrary colours).
  * `preprocessing_layers(size)` resizes (bilinear) and maps [0, 255] to [-1, 1], which is
    exactly `keras.applications.inception_v3.preprocess_input` (x / 127.5 - 1) up to float
    rounding. They are plain Keras layers, so the exported `.keras` model carries them and
    loads in safe mode.
  * `image_dataset` is the tf.data pipeline: parallel decode, resize, rescale, batch, prefetch.

    >>> ds = image_dataset(["a.jpg", "b.png"], size=150, batch_size=32)
    >>> next(iter(ds)).shape
    TensorShape([2, 150, 150, 3])
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps

from tasks.tf_data import without_autotune

MIN_IMAGE_SIZE = 75  # InceptionV3 needs at least 75x75 inputs
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
# Bump when decoding or preprocessing changes numerically: it is part of the backbone
# fingerprint, so features computed the old way are never reused.
PREPROCESS_VERSION = "pil-rgb-v2+bilinear+tf-scale"


def check_image_size(size: int) -> int:
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size {size} is below {MIN_IMAGE_SIZE}, InceptionV3's minimum")
    return size


def to_rgb(image: Image.Image) -> Image.Image:
    """Normalise a decoded Pillow image to 8-bit RGB (see module docstring)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: scale to 8 bits instead of clipping everything above 255.
        # I;16* is 16-bit by definition (a dark image has only small values); plain 32-bit
        # "I" has no declared range, so guess from the data.
        wide = np.asarray(image, dtype=np.float64)
        sixteen_bit = image.mode.startswith("I;16") or wide.max() > 255
        scale = 255.0 / 65535.0 if sixteen_bit else 1.0
        image = Image.fromarray(np.clip(wide * scale + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("LA", "La", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "RGBa"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    if image.mode != "RGB":
        image = image.convert("RGB")  # L, 1, CMYK, YCbCr, F, ...
    return image


def load_rgb(path: str | bytes | os.PathLike[str]) -> np.ndarray:
    """Decode one image file into an RGB uint8 array of shape (H, W, 3)."""
    if isinstance(path, bytes):
        path = path.decode()
    with Image.open(path) as image:
        image.seek(0)  # first frame of animated GIF/WebP
        return np.asarray(to_rgb(image), dtype=np.uint8)


def load_rgb_verified(path: str | bytes, content_id: str | bytes) -> np.ndarray:
    """`load_rgb`, but only if the file's sha256 is still `content_id` (else ValueError)."""
    path = path.decode() if isinstance(path, bytes) else path
    content_id = content_id.decode() if isinstance(content_id, bytes) else content_id
    with open(path, "rb") as handle:
        data = handle.read()
    if hashlib.sha256(data).hexdigest() != content_id:
        raise ValueError(f"{path} changed since ingestion")
    return load_rgb(io.BytesIO(data))


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
