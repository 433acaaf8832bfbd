"""`TimedCheckpoint`: a Keras callback that lets an interrupted training resume exactly.

It saves, at most every `every_s` seconds after an epoch, everything the rest of the training
depends on: the model's variables (weights and the Dropout layers' RNG state), the
optimizer's variables, Keras's EarlyStopping state (best value and epoch, wait, best weights)
and the history so far. `restore(model)` before `fit` loads it and returns the epoch to
resume at; during `fit` it gives the EarlyStopping callback its state back. A resumed training
ends with exactly the weights and history of an uninterrupted one (tests/test_train.py).

Why not Keras's BackupAndRestore: it writes weights and RMSprop slots (about 160 MB for the
seed's head) after every epoch or every N batches, which here costs about as much as the epoch
itself, and it does not save EarlyStopping's state, so a resumed training would stop at
another epoch than an uninterrupted one.

Files in `directory`: `state.json` (written last, naming the arrays it belongs to), one
`epoch-NNNN.npz` and at most one `best-NNNN.npz`, so a crash at any moment leaves the previous
complete checkpoint or the new one.

    checkpoint = TimedCheckpoint(run_dir / "checkpoints", key, every_s=60, early_stopping=es)
    initial_epoch, past = checkpoint.restore(model)
    model.fit(..., initial_epoch=initial_epoch, callbacks=[es, checkpoint])
"""

from __future__ import annotations

import io
import logging
import math
import time
from pathlib import Path

import keras
import numpy as np

from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.files import atomic_write
from inception_retrain.plumbing.schemas import read_document, write_document

log = logging.getLogger(__name__)

KIND, VERSION, STATE_FILE = "training-checkpoint", 1, "state.json"


def _save_arrays(path: Path, arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    atomic_write(path, buffer.getvalue())


def _load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


class TimedCheckpoint(keras.callbacks.Callback):
    """Checkpoint after an epoch when `every_s` passed since the last one (0: every epoch).

    `key` names the training (data and settings): a checkpoint of another key is ignored.
    `early_stopping` is the run's EarlyStopping callback (or None); it must come before this
    callback in `fit`'s list, so its state is final when this one saves.
    """

    def __init__(self, directory: Path, key: str, every_s: float, early_stopping=None):
        super().__init__()
        self.directory = Path(directory)
        self.key = key
        self.every_s = every_s
        self.early_stopping = early_stopping
        self.history: dict[str, list[float]] = {}
        self._restored_stopping: dict | None = None
        self._last = time.monotonic()

    # --- saving ---------------------------------------------------------------------------

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        if self.model.stop_training or epoch + 1 >= self.params.get("epochs", math.inf):
            return  # the training ends now: nothing left to resume
        if time.monotonic() - self._last >= self.every_s:
            self._save(epoch)
            self._last = time.monotonic()

    def _save(self, epoch: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        arrays = f"epoch-{epoch + 1:04d}.npz"
        variables = [v.numpy() for v in self.model.variables]
        _save_arrays(
            self.directory / arrays, variables + [v.numpy() for v in self.model.optimizer.variables]
        )
        stopping, best_file = self._stopping_state(), None
        if stopping and stopping.pop("best_weights") is not None:
            best_file = f"best-{stopping['best_epoch'] + 1:04d}.npz"
            if not (self.directory / best_file).is_file():  # written once per best epoch
                _save_arrays(self.directory / best_file, self.early_stopping.best_weights)
        state = {
            "key": self.key,
            "epochs_done": epoch + 1,
            "arrays": arrays,
            "n_model_variables": len(variables),
            "best_weights": best_file,
            "early_stopping": stopping,
            "history": self.history,
        }
        write_document(self.directory / STATE_FILE, KIND, VERSION, state)
        for path in self.directory.glob("*.npz"):
            if path.name not in (arrays, best_file):
                path.unlink(missing_ok=True)

    def _stopping_state(self) -> dict | None:
        es = self.early_stopping
        if es is None:
            return None
        best = None if es.best is None else float(es.best)
        return {
            "best": best,
            "best_epoch": es.best_epoch,
            "wait": es.wait,
            "best_weights": es.best_weights,
        }

    # --- restoring ------------------------------------------------------------------------

    def restore(self, model) -> int:
        """Load a checkpoint of this training into `model` (compiled); returns the epoch to
        start at (0 when there is no usable checkpoint)."""
        try:
            saved = read_document(self.directory / STATE_FILE, KIND, VERSION)
        except DataError:
            return 0
        if saved.get("key") != self.key:
            log.warning("checkpoint in %s is from other data/settings: ignored", self.directory)
            return 0
        try:
            arrays = _load_arrays(self.directory / saved["arrays"])
            best = saved["best_weights"] and _load_arrays(self.directory / saved["best_weights"])
        except (OSError, ValueError, KeyError) as error:
            log.warning("checkpoint unreadable (%s): starting from scratch", error)
            return 0
        model.optimizer.build(model.trainable_variables)
        targets = list(model.variables) + list(model.optimizer.variables)
        if saved["n_model_variables"] != len(model.variables) or len(arrays) != len(targets):
            log.warning("checkpoint does not match this head: starting from scratch")
            return 0
        for variable, value in zip(targets, arrays, strict=True):
            variable.assign(value)
        self.history = saved["history"]
        if saved["early_stopping"] is not None:
            self._restored_stopping = {**saved["early_stopping"], "best_weights": best or None}
        return int(saved["epochs_done"])

    def on_train_begin(self, logs=None):
        # EarlyStopping reset its state in its own on_train_begin (it comes first): give it back.
        state, es = self._restored_stopping, self.early_stopping
        if state is not None and es is not None:
            es.best = state["best"]
            es.best_epoch, es.wait = state["best_epoch"], state["wait"]
            es.best_weights = state["best_weights"]

    def clear(self) -> None:
        """Remove the checkpoint (the training completed)."""
        for path in self.directory.glob("*.npz"):
            path.unlink(missing_ok=True)
        (self.directory / STATE_FILE).unlink(missing_ok=True)
