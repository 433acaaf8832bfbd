"""Choosing where the head trains: `--device auto|cpu|gpu` and `--mixed-precision`.

Semantics:
  * `auto` trains on a GPU when TensorFlow sees one (`tf.config.list_physical_devices("GPU")`),
    otherwise on the CPU.
  * `gpu` with no GPU visible is a `DeviceError` (one line, no traceback).
  * `cpu` hides every GPU from TensorFlow (when the runtime is not initialised yet), so no op
    lands on a GPU by accident; `device_scope` pins ops to the CPU in any case.
  * Mixed precision (`mixed_float16`) is a GPU-only speed-up. The choice on a CPU:
      - `device="cpu"` with mixed precision is a contradiction in the request: `DeviceError`;
      - `device="auto"` that resolves to the CPU logs a warning and trains in float32, so one
        configuration runs on any machine and uses mixed precision only where it helps.
    Under `mixed_float16` the head's final Dense is float32 (`head.build_head`), so
    probabilities and the loss stay float32; Keras wraps the optimizer in a `LossScaleOptimizer`.

    >>> chosen = select_device("auto", mixed_precision=False)   # "cpu" or "gpu"
    >>> with device_scope("auto", mixed_precision=True) as chosen:
    ...     model = build_head(...)   # built and trained on `chosen`, policy restored after
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from inception_retrain.plumbing.errors import DeviceError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "gpu")


def visible_gpus() -> list:
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def select_device(device: str, mixed_precision: bool) -> str:
    """Resolve `device` to "cpu" or "gpu" and set Keras' global dtype policy accordingly."""
    import keras
    import tensorflow as tf

    if device not in DEVICES:
        raise DeviceError(f"unknown device '{device}' (choose auto, cpu or gpu)")
    gpus = visible_gpus()
    if device == "gpu" and not gpus:
        raise DeviceError(
            "--device gpu was requested but TensorFlow sees no GPU "
            "(install the [gpu] extra and a CUDA driver, or use --device auto/cpu)"
        )
    chosen = "gpu" if gpus and device != "cpu" else "cpu"
    if chosen == "cpu" and gpus:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # runtime already initialised: device_scope still pins the CPU
            log.warning("GPUs stay visible (TensorFlow already initialised); ops pinned to CPU")

    if mixed_precision and chosen == "cpu":
        if device == "cpu":
            raise DeviceError("mixed precision needs a GPU; drop --mixed-precision or use a GPU")
        log.warning("mixed precision ignored: no GPU, training in float32 on the CPU")
    use_mixed = mixed_precision and chosen == "gpu"
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    return chosen


@contextlib.contextmanager
def device_scope(device: str, mixed_precision: bool) -> Iterator[str]:
    """`select_device`, then run the block on that device; the previous policy is restored."""
    import keras
    import tensorflow as tf

    previous = keras.mixed_precision.global_policy()
    try:
        chosen = select_device(device, mixed_precision)
        with tf.device("/GPU:0" if chosen == "gpu" else "/CPU:0"):
            yield chosen
    finally:
        keras.mixed_precision.set_global_policy(previous)
