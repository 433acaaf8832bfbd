"""The frozen InceptionV3 backbone: where its weights come from, the cut, and its fingerprint.

    >>> backbone = load_backbone("random:0", layer="mixed7", image_size=150)
    >>> backbone.output_shape
    (None, 7, 7, 768)
    >>> fingerprint, inputs = backbone_fingerprint(backbone, "random:0", "mixed7", 150)

Weights (`RetrainConfig.weights`, parsed by `inception_retrain.features.weights.parse_weights`):
  * `imagenet`: `InceptionV3(weights="imagenet")`. Keras downloads the no-top ImageNet weights
    once into its cache folder (`$KERAS_HOME/models`, default `~/.keras/models`) and reuses
    them; a failed download is a `WeightsError`.
  * a local file: the seed's pattern, `load_weights(path)` on the whole include_top=False
    model, then the cut. Keras 2 `.h5` files (like Keras's own
    `inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5`), Keras 3 `.weights.h5` and
    `.keras` files work. A missing, unreadable or non-matching file is a `WeightsError`;
    a partial match (Keras only warns) is refused too, so random layers never pass as trained.
  * `random[:SEED]`: conv kernels He-normal from numpy's seeded generator (see
    `_variance_preserving_init`), the rest Keras's own seeded initialisers, so one seed
    gives bit-identical weights in every process. For demos and tests only: its
    description says RANDOM.

Every layer is frozen (`trainable=False`), so BatchNormalization runs in inference mode even
when called with `training=True`: the output does not depend on `training`, which is what makes
cached features exact. Only the stable, named block outputs `mixed0`..`mixed10` can be cut at
(Keras numbers the other layers per process, so their names are not stable).
"""

from __future__ import annotations

import hashlib
import json
import random
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from inception_retrain.features import feature_parts
from inception_retrain.features.backbone_spec import BACKBONE_LAYERS
from inception_retrain.features.preprocess import PREPROCESS_VERSION, check_image_size
from inception_retrain.features.weights import parse_weights
from inception_retrain.plumbing import storage
from inception_retrain.plumbing.errors import (
    ConfigError,
    DownloadError,
    PipelineError,
    WeightsError,
)

# Keras only warns when a weights file matches the model partly; these words mark that.
_PARTIAL_LOAD_WARNINGS = ("Skipping", "could not be loaded", "freshly-initialized", "mismatch")
# Bump when the fingerprint's recipe changes, so no cache is reused across recipes.
FINGERPRINT_VERSION = 1


class WeightsDownloadError(WeightsError, DownloadError):
    """The ImageNet weights could not be downloaded; the extract task retries this."""


class UnknownLayerError(PipelineError, ValueError):
    """The requested cut layer is not one of `BACKBONE_LAYERS`."""


def check_layer(layer: str) -> str:
    if layer not in BACKBONE_LAYERS:
        raise UnknownLayerError(
            f"unknown backbone layer '{layer}': valid layers are {', '.join(BACKBONE_LAYERS)} "
            "(InceptionV3 block outputs; mixed7 is the seed's cut)"
        )
    return layer


@contextmanager
def _seeded_initialisers(seed: int):
    """Keras draws each unseeded initialiser's seed from Python's `random`: seed it locally,
    and restore the caller's state, so building is deterministic without global side effects."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _inception_v3(image_size: int, weights: str | None):
    import keras

    return keras.applications.InceptionV3(
        include_top=False, input_shape=(image_size, image_size, 3), weights=weights
    )


def _variance_preserving_init(model, seed: int):
    """Redraw every conv kernel from He-normal (variance 2 / fan_in), seeded.

    Keras's default Glorot init loses about half the signal variance per ReLU conv; with
    BatchNorm at its initial identity statistics, `mixed7` values shrink to about 1e-3 and a
    head on them cannot learn. He init keeps them at the scale of trained features (mean |f|
    about 0.3), so random-weight demos show real learning. numpy's generator makes the draw
    identical in every process.
    """
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            shape = tuple(layer.kernel.shape)
            std = np.sqrt(2.0 / np.prod(shape[:-1]))
            layer.kernel.assign(rng.normal(0.0, std, size=shape).astype("float32"))
    return model


def _full_model(weights: str, image_size: int):
    """The include_top=False InceptionV3 with the requested weights loaded."""
    try:
        source = parse_weights(weights)
    except ConfigError as error:
        raise WeightsError(str(error)) from None
    if source.kind == "random":
        with _seeded_initialisers(source.seed):
            model = _inception_v3(image_size, None)
        return _variance_preserving_init(model, source.seed)
    if source.kind == "imagenet":
        try:
            return _inception_v3(image_size, "imagenet")
        except Exception as error:  # network, proxy, corrupt cache entry, ...
            raise WeightsDownloadError(
                f"could not get the ImageNet weights ({_first_line(error)}); download "
                "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 and pass "
                "--weights PATH"
            ) from None
    if source.uri:  # Keras reads a local file: the object is downloaded once per process
        try:
            path = storage.local_copy(source.uri)
        except ConfigError as error:
            raise WeightsError(str(error)) from None
    else:
        path = source.path
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    model = _inception_v3(image_size, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(str(path))
        except Exception as error:  # h5py OSError, Keras ValueError on mismatch, ...
            raise WeightsError(
                f"weights file {path} does not fit InceptionV3 (include_top=False): "
                f"{_first_line(error)}"
            ) from None
    skipped = [w for w in caught if any(k in str(w.message) for k in _PARTIAL_LOAD_WARNINGS)]
    if skipped:
        raise WeightsError(
            f"weights file {path} only partly fits InceptionV3 (include_top=False): "
            f"{_first_line(skipped[0].message)}"
        )
    return model


def _first_line(error: object) -> str:
    """The message's first line; one that ends in ':' (Keras's "Example error message for
    object <Conv2D ...>:") with the line that completes it."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = lines[0] if not lines[0].endswith(":") or len(lines) < 2 else " ".join(lines[:2])
    return text[:400]


def load_inception(weights: str, image_size: int = 150):
    """The whole include_top=False InceptionV3 with `weights` (not cut, not frozen)."""
    check_image_size(image_size)
    return _full_model(weights, image_size)


def load_backbone(weights: str, layer: str = "mixed7", image_size: int = 150):
    """The frozen backbone: InceptionV3 (include_top=False) with `weights`, cut at `layer`."""
    import keras

    check_layer(layer)
    check_image_size(image_size)
    full = _full_model(weights, image_size)
    backbone = keras.Model(full.input, full.get_layer(layer).output, name=f"inception_v3_{layer}")
    backbone.trainable = False
    for each in backbone.layers:
        each.trainable = False
    return backbone


def save_random_weights(path: str | Path, image_size: int = 150, seed: int = 0) -> Path:
    """Save a seeded random InceptionV3 (include_top=False) as a weights file for tests/demos."""
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"{path}: Keras 3 weights files must end in .weights.h5")
    path.parent.mkdir(parents=True, exist_ok=True)
    _full_model(f"random:{seed}", image_size).save_weights(str(path))
    return path


def weights_digest(model) -> str:
    """sha256 over every variable of `model` in order (dtype, shape, values), including the
    BatchNorm moving statistics. Variable names are left out: Keras numbers them per process."""
    digest = hashlib.sha256()
    for variable in model.weights:
        values = np.ascontiguousarray(variable.numpy())
        digest.update(f"{values.dtype.str}{values.shape}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def backbone_fingerprint(
    model, weights: str, layer: str, image_size: int, feature_dtype: str = "float16"
) -> tuple[str, dict]:
    """Identify exactly what produces (and how we store) a cached feature.

    Covers: the cut backbone's weights CONTENT (every variable's values, in order, including
    BatchNorm moving statistics: so a moved or renamed file keeps its cache, and a changed
    file gets a new one), the weights source kind (imagenet/file/random), the cut layer, the
    input image size, `preprocess.PREPROCESS_VERSION` (decode + resize + scale), the stored
    dtype (float16 values differ from float32 ones), the output feature shape and the cache
    part format (`feature_parts.VERSION`), so a new format never reuses old parts.
    Not covered: the TensorFlow/Keras version and CPU kernels (results may differ by float
    rounding, recorded in backbone.json for information). Cost: one pass over ~36 MB of
    weights for mixed7 (well under a second), small next to any extraction.

    Returns (16-hex-digit fingerprint, its inputs as a JSON-able dict).
    """
    inputs = {
        "fingerprint_version": FINGERPRINT_VERSION,
        "weights_source": parse_weights(weights).kind,
        "weights_sha256": weights_digest(model),
        "layer": layer,
        "image_size": int(image_size),
        "preprocess_version": PREPROCESS_VERSION,
        "feature_dtype": feature_dtype,
        "feature_shape": [int(d) for d in model.output_shape[1:]],
        "part_format": feature_parts.VERSION,
    }
    blob = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16], inputs


def inference_function(model, jit_compile: bool = False, output_dtype: str = "float32"):
    """`model(x, training=False)` as one traced graph (about 2x eager speed on CPU, bit-identical
    to the eager call); any batch size reuses the same trace. With `output_dtype="float16"` the
    rounding (to nearest even, as NumPy's) happens in the graph, off the Python thread."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)

    @tf.function(input_signature=[spec], jit_compile=jit_compile, reduce_retracing=True)
    def infer(images):
        return tf.cast(model(images, training=False), output_dtype)

    return infer
