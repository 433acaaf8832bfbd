"""RGB normalisation (`to_rgb`/`load_rgb`) and the tf.data preprocessing pipeline.

Every case writes a real file with Pillow and decodes it back through `load_rgb`.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inception_retrain.data.images import load_rgb
from inception_retrain.features.preprocess import (
    check_image_size,
    image_dataset,
    preprocessing_layers,
)

RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)


def _assert_close(actual, expected, tolerance=0):
    actual = np.asarray(actual, dtype=np.int32)
    assert np.abs(actual - np.asarray(expected, dtype=np.int32)).max() <= tolerance, actual


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    rgb = load_rgb(tmp_path / "g.png")
    assert rgb.shape == (8, 64, 3) and rgb.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], gray)


def test_palette_without_transparency_keeps_its_colours(tmp_path):
    image = Image.new("P", (4, 2))
    image.putpalette([*RED, *BLUE] + [0] * 762)
    image.putdata([0, 1, 0, 1, 1, 0, 1, 0])
    image.save(tmp_path / "p.png")
    rgb = load_rgb(tmp_path / "p.png")
    _assert_close(rgb[0, 0], RED)
    _assert_close(rgb[0, 1], BLUE)
    _assert_close(rgb[1, 0], BLUE)


def test_palette_transparency_composites_onto_white(tmp_path):
    # Palette index 0 is transparent but its stored colour is black: a naive convert("RGB")
    # would show black.
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, *RED] + [0] * 762)
    image.putdata([0, 1])
    image.save(tmp_path / "pt.png", transparency=0)
    assert Image.open(tmp_path / "pt.png").info.get("transparency") == 0
    rgb = load_rgb(tmp_path / "pt.png")
    _assert_close(rgb[0, 0], WHITE)
    _assert_close(rgb[0, 1], RED)


def test_rgba_alpha_composites_onto_white(tmp_path):
    pixels = np.zeros((1, 3, 4), dtype=np.uint8)
    pixels[0, 0] = (0, 0, 0, 0)  # fully transparent black -> white
    pixels[0, 1] = (255, 0, 0, 255)  # opaque red -> red
    pixels[0, 2] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    Image.fromarray(pixels, "RGBA").save(tmp_path / "a.png")
    rgb = load_rgb(tmp_path / "a.png")
    _assert_close(rgb[0, 0], WHITE)
    _assert_close(rgb[0, 1], RED)
    _assert_close(rgb[0, 2], (127, 127, 127), tolerance=1)


def test_la_alpha_composites_onto_white(tmp_path):
    pixels = np.array([[[0, 0], [0, 255], [200, 255]]], dtype=np.uint8)
    Image.fromarray(pixels, "LA").save(tmp_path / "la.png")
    assert Image.open(tmp_path / "la.png").mode == "LA"
    rgb = load_rgb(tmp_path / "la.png")
    _assert_close(rgb[0, 0], WHITE)
    _assert_close(rgb[0, 1], (0, 0, 0))
    _assert_close(rgb[0, 2], (200, 200, 200))


def test_cmyk_jpeg_comes_back_with_the_right_colours(tmp_path):
    left, right = Image.new("RGB", (16, 16), RED), Image.new("RGB", (16, 16), BLUE)
    image = Image.new("RGB", (32, 16))
    image.paste(left, (0, 0))
    image.paste(right, (16, 0))
    image.convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    rgb = load_rgb(tmp_path / "c.jpg")
    assert rgb.shape == (16, 32, 3)
    _assert_close(rgb[8, 4], RED, tolerance=12)
    _assert_close(rgb[8, 28], BLUE, tolerance=12)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    wide = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "w.png")
    assert Image.open(tmp_path / "w.png").mode.startswith("I;16")
    _assert_close(load_rgb(tmp_path / "w.png")[0, :, 0], [0, 100, 255])


def test_dark_16_bit_png_stays_dark(tmp_path):
    # All values under 256: still 16-bit data, i.e. nearly black, not a bright 8-bit image.
    wide = np.array([[0, 200, 255]], dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I;16")
    _assert_close(load_rgb(tmp_path / "d.png")[0, :, 0], [0, 1, 1])


def test_exif_orientation_6_is_rotated(tmp_path):
    # Stored 40 wide x 20 high: left half red, right half blue, green square top-left.
    # Orientation 6 means "rotate 90 degrees clockwise to display": 20 wide x 40 high,
    # red on top, blue below, green square top-right.
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:, :20] = RED
    stored[:, 20:] = BLUE
    stored[:8, :8] = GREEN
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "r.jpg", quality=95, exif=exif.tobytes())
    rgb = load_rgb(tmp_path / "r.jpg")
    assert rgb.shape == (40, 20, 3)
    _assert_close(rgb[12, 6], RED, tolerance=40)
    _assert_close(rgb[30, 10], BLUE, tolerance=40)
    _assert_close(rgb[3, 16], GREEN, tolerance=40)
    _assert_close(rgb[3, 3], RED, tolerance=40)


def test_animated_gif_uses_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, BLUE)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    _assert_close(load_rgb(tmp_path / "anim.gif")[4, 4], RED, tolerance=2)


# --- tf.data pipeline --------------------------------------------------------------------


def test_image_dataset_matches_keras_inception_preprocessing(tmp_path):
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(3)
    paths = []
    for i, (height, width) in enumerate([(90, 130), (200, 160), (150, 150)]):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(pixels).save(paths[-1])

    batches = list(image_dataset([str(p) for p in paths], size=150, batch_size=2))
    assert [b.shape[0] for b in batches] == [2, 1]
    images = np.concatenate([b.numpy() for b in batches])
    assert images.shape == (3, 150, 150, 3)
    assert images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0

    for path, image in zip(paths, images, strict=True):
        raw = tf.constant(np.asarray(Image.open(path)), tf.float32)
        resized = tf.image.resize(raw, (150, 150), method="bilinear")
        expected = keras.applications.inception_v3.preprocess_input(resized.numpy())
        np.testing.assert_allclose(image, expected, atol=1e-5)


def test_image_size_below_75_is_an_error():
    assert check_image_size(75) == 75
    with pytest.raises(ValueError, match="below 75"):
        check_image_size(74)
    with pytest.raises(ValueError, match="below 75"):
        preprocessing_layers(50)
