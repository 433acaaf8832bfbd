"""Does a weights file fit InceptionV3? Read from the HDF5 file, without building the model.

Building InceptionV3 and calling `load_weights` takes 15-20 s (TensorFlow's import included);
reading the layer names and variable shapes from the file takes a fraction of a second. So a
run refuses a wrong file before it starts (`preflight`), and `backbone.load_backbone` still
loads it for real later. The check follows Keras 3's own loaders, chosen by the file's name:

  * `.weights.h5`, and `.keras` (a zip holding `model.weights.h5`): variables live at
    `layers/<class>_<n>/vars/<i>`, where `<class>_<n>` counts the layers of one class in
    `model.layers` order (`conv2d`, `conv2d_1`, ...). Every Conv2D and BatchNormalization
    of InceptionV3 must be there with exactly its variables' shapes; other groups (the
    top of an include_top=True file, say) are ignored, as Keras ignores them.
  * `.h5` / `.hdf5` (Keras 2, like Keras's own `..._notop.h5`): layers are matched by order.
    The layers that have weights (attribute `layer_names`, at the top or under
    `model_weights`) must be InceptionV3's 188, with their shapes, in order.

InceptionV3's layout is written down below (`CONV_KERNELS`, `LAYER_ORDER`);
tests/test_preflight.py checks it against Keras's own model.

    >>> check_weights_file(Path("inception_v3_notop.h5"))    # None, or raises WeightsError
"""

from __future__ import annotations

import contextlib
import io
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

from inception_retrain.plumbing.errors import WeightsError

SUFFIXES = (".weights.h5", ".keras", ".h5", ".hdf5")
KERAS_ARCHIVE_WEIGHTS = "model.weights.h5"  # inside a .keras zip (Keras's saving_lib)
MAX_INFLATED_BYTES = 1 << 30  # a compressed entry up to this size is read into memory

# Kernel shape (height, width, in, out) of each Conv2D of InceptionV3 (include_top=False), in
# `model.layers` order. Its convolutions have no bias; each BatchNormalization (scale=False)
# holds beta, moving mean and moving variance, of the matching Conv2D's `out` channels.
CONV_KERNELS: tuple[tuple[int, int, int, int], ...] = (
    (3, 3, 3, 32),
    (3, 3, 32, 32),
    (3, 3, 32, 64),
    (1, 1, 64, 80),
    (3, 3, 80, 192),
    (1, 1, 192, 64),
    (1, 1, 192, 48),
    (3, 3, 64, 96),
    (1, 1, 192, 64),
    (5, 5, 48, 64),
    (3, 3, 96, 96),
    (1, 1, 192, 32),
    (1, 1, 256, 64),
    (1, 1, 256, 48),
    (3, 3, 64, 96),
    (1, 1, 256, 64),
    (5, 5, 48, 64),
    (3, 3, 96, 96),
    (1, 1, 256, 64),
    (1, 1, 288, 64),
    (1, 1, 288, 48),
    (3, 3, 64, 96),
    (1, 1, 288, 64),
    (5, 5, 48, 64),
    (3, 3, 96, 96),
    (1, 1, 288, 64),
    (1, 1, 288, 64),
    (3, 3, 64, 96),
    (3, 3, 288, 384),
    (3, 3, 96, 96),
    (1, 1, 768, 128),
    (7, 1, 128, 128),
    (1, 1, 768, 128),
    (1, 7, 128, 128),
    (1, 7, 128, 128),
    (7, 1, 128, 128),
    (1, 1, 768, 192),
    (7, 1, 128, 192),
    (1, 7, 128, 192),
    (1, 1, 768, 192),
    (1, 1, 768, 160),
    (7, 1, 160, 160),
    (1, 1, 768, 160),
    (1, 7, 160, 160),
    (1, 7, 160, 160),
    (7, 1, 160, 160),
    (1, 1, 768, 192),
    (7, 1, 160, 192),
    (1, 7, 160, 192),
    (1, 1, 768, 192),
    (1, 1, 768, 160),
    (7, 1, 160, 160),
    (1, 1, 768, 160),
    (1, 7, 160, 160),
    (1, 7, 160, 160),
    (7, 1, 160, 160),
    (1, 1, 768, 192),
    (7, 1, 160, 192),
    (1, 7, 160, 192),
    (1, 1, 768, 192),
    (1, 1, 768, 192),
    (7, 1, 192, 192),
    (1, 1, 768, 192),
    (1, 7, 192, 192),
    (1, 7, 192, 192),
    (7, 1, 192, 192),
    (1, 1, 768, 192),
    (7, 1, 192, 192),
    (1, 7, 192, 192),
    (1, 1, 768, 192),
    (1, 1, 768, 192),
    (1, 7, 192, 192),
    (1, 1, 768, 192),
    (7, 1, 192, 192),
    (3, 3, 192, 320),
    (3, 3, 192, 192),
    (1, 1, 1280, 448),
    (1, 1, 1280, 384),
    (3, 3, 448, 384),
    (1, 3, 384, 384),
    (3, 1, 384, 384),
    (1, 3, 384, 384),
    (3, 1, 384, 384),
    (1, 1, 1280, 320),
    (1, 1, 1280, 192),
    (1, 1, 2048, 448),
    (1, 1, 2048, 384),
    (3, 3, 448, 384),
    (1, 3, 384, 384),
    (3, 1, 384, 384),
    (1, 3, 384, 384),
    (3, 1, 384, 384),
    (1, 1, 2048, 320),
    (1, 1, 2048, 192),
)
# The layers with weights in `model.layers` order: c = Conv2D, b = BatchNormalization.
LAYER_ORDER = (
    "cbcbcbcbcbcbccbbccccbbbbcbccbbccccbbbbcbccbbccccbbbbcbcbccbbcbcbccbbccbbccccbbbbcbcbccbbccbb"
    "ccccbbbbcbcbccbbccbbccccbbbbcbcbccbbccbbccccbbbbcbcbccbbccbbcbccbbcccccbbbbcbbcbccbbcccccbbbbcbb"
)
BATCH_NORM_VARIABLES = 3  # beta, moving_mean, moving_variance


def expected_layers() -> list[tuple[str, list[tuple[int, ...]]]]:
    """[(Keras 3 layer key, variable shapes)] of InceptionV3, in `model.layers` order."""
    layers, seen = [], {"c": 0, "b": 0}
    for kind in LAYER_ORDER:
        index = seen[kind]
        seen[kind] += 1
        name = "conv2d" if kind == "c" else "batch_normalization"
        key = name if index == 0 else f"{name}_{index}"
        if kind == "c":
            layers.append((key, [CONV_KERNELS[index]]))
        else:
            channels = CONV_KERNELS[index][3]
            layers.append((key, [(channels,)] * BATCH_NORM_VARIABLES))
    return layers


def _unfit(path: Path, why: str) -> WeightsError:
    return WeightsError(f"weights file {path} does not fit InceptionV3 (include_top=False): {why}")


class _StoredEntry(io.RawIOBase):
    """An uncompressed zip entry as a seekable file (`ZipFile.open` re-reads the entry from
    its start on every backward seek, which made reading a .keras archive's HDF5 take 1.7 s)."""

    def __init__(self, handle, start: int, size: int):
        self._handle, self._start, self._size, self._position = handle, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        count = max(0, min(len(buffer), self._size - self._position))
        self._handle.seek(self._start + self._position)
        data = self._handle.read(count)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


@contextlib.contextmanager
def _archive_weights(path: Path) -> Iterator[object]:
    """The HDF5 weights inside a .keras archive, as a file object."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(KERAS_ARCHIVE_WEIGHTS)
        if info.compress_type != zipfile.ZIP_STORED:  # Keras stores it; a user re-zipped it
            if info.file_size <= MAX_INFLATED_BYTES:  # seeking in a stream takes minutes
                yield io.BytesIO(archive.read(info))
                return
            with archive.open(info) as inner:
                yield inner
            return
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            header = handle.read(30)  # the local file header: its name and extra lengths
            name_length, extra_length = struct.unpack("<HH", header[26:30])
            start = info.header_offset + 30 + name_length + extra_length
            yield _StoredEntry(handle, start, info.file_size)


@contextlib.contextmanager
def _open_h5(path: Path) -> Iterator[object]:
    import h5py  # installed with TensorFlow; imported here, where it is needed

    try:
        with contextlib.ExitStack() as stack:
            source = path
            if path.name.endswith(".keras"):
                source = stack.enter_context(_archive_weights(path))
            yield stack.enter_context(h5py.File(source, "r"))
    except (OSError, KeyError, zipfile.BadZipFile, struct.error) as error:
        kind = "a Keras .keras archive" if path.name.endswith(".keras") else "an HDF5 file"
        reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[0]
        raise WeightsError(f"weights file {path} is not {kind} Keras can read: {reason}") from None


def _shape_text(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _check_keras3(handle, path: Path) -> None:
    layers = handle.get("layers")
    if layers is None:
        raise _unfit(path, "it holds no Keras 3 layers (no 'layers' group)")
    for key, shapes in expected_layers():
        variables = layers.get(f"{key}/vars")
        if variables is None:
            raise _unfit(path, f"it has no layer '{key}'")
        found = [tuple(variables[str(i)].shape) for i in range(len(variables))]
        if found != shapes:
            raise _unfit(
                path,
                f"layer '{key}' holds {', '.join(map(_shape_text, found)) or 'nothing'}, "
                f"InceptionV3 needs {', '.join(map(_shape_text, shapes))}",
            )


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _check_keras2(handle, path: Path) -> None:
    group = handle
    if "layer_names" not in group.attrs and "model_weights" in group:
        group = group["model_weights"]
    if "layer_names" not in group.attrs:
        raise _unfit(path, "it is not a Keras weights file (no 'layer_names')")
    saved = []
    for name in map(_text, group.attrs["layer_names"]):
        weight_names = [_text(w) for w in group[name].attrs.get("weight_names", [])]
        if weight_names:
            saved.append((name, [tuple(group[name][w].shape) for w in weight_names]))
    expected = expected_layers()
    if len(saved) != len(expected):
        raise _unfit(
            path, f"it has {len(saved)} layers with weights, InceptionV3 has {len(expected)}"
        )
    for index, ((name, found), (_, shapes)) in enumerate(zip(saved, expected, strict=True)):
        if found != shapes:
            raise _unfit(
                path,
                f"layer #{index} ('{name}') holds {', '.join(map(_shape_text, found))}, "
                f"InceptionV3 needs {', '.join(map(_shape_text, shapes))}",
            )


def check_weights_file(path: str | Path) -> None:
    """Raise a one-line WeightsError unless Keras would load `path` into InceptionV3."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    name = path.name.lower()
    if not name.endswith(SUFFIXES):
        raise WeightsError(
            f"weights file {path}: Keras reads weights from {', '.join(SUFFIXES)} files only"
        )
    with _open_h5(path) as handle:
        try:
            if name.endswith((".weights.h5", ".keras")):
                _check_keras3(handle, path)
            else:
                _check_keras2(handle, path)
        except (OSError, KeyError, TypeError, ValueError) as error:  # a damaged file
            raise _unfit(path, f"it cannot be read ({str(error).strip()[:200]})") from None
