"""Quiet, honest stderr: TensorFlow's known noise is dropped, the rest passes.

One filter for every process that may load TensorFlow: the command line installs it, a flow
run started by a deployment's worker installs it when its flow module is imported
(`inception_retrain/flows/__init__.py`), and every Dask worker installs it through the
`QuietStderr` worker plugin the flows register (`tasks/runtime.py`). It lives in plumbing so
that all of them may import it.

TensorFlow's C++ runtime writes to file descriptor 2 itself. `TF_CPP_MIN_LOG_LEVEL=2` (a CLI
default) hides its info and warning lines, but not
  * the lines logged before absl's logging starts, whatever the level: the preamble "All log
    messages before absl::InitializeLog() ...", "oneDNN custom operations are on", "Could not
    find cuda drivers", "This TensorFlow binary is optimized ..." (and its "To enable ..." line);
  * error-level lines that are no error on a machine without an NVIDIA GPU: "failed call to
    cuInit", and "oneDNN supports DT_HALF only on platforms with AVX-512" (a fallback to Eigen);
nor Keras's "N out of the last M calls to <function ...> triggered tf.function retracing"
warning, which counts the dropout sweep's many heads together (each new model traces its own
train function, as it must) and so fires on correct code.

A log level that hid these would hide real errors too. So `install()` points fd 2 at a pipe
(a pseudo-terminal when stderr is a terminal, so progress bars and colours stay as they were)
and a thread copies everything to the real stderr except whole lines that match `NOISE`;
"failed call to cuInit" is dropped only where no NVIDIA device exists. Child processes
(Prefect's server, sweep workers, served flow runs) inherit the filtered stderr. An
unterminated line that could become a noise line is held until its end; anything else
(a progress bar's update) passes at once. At exit the filter drains and fd 2 is restored.
`INCEPTION_RETRAIN_RAW_STDERR=1` turns it off.

    install()   # before TensorFlow loads; idempotent
    quiet()     # the same, and TF_CPP_MIN_LOG_LEVEL=2 unless the user set a level
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import re
import sys
import termios
import threading
import tty

RAW_ENV = "INCEPTION_RETRAIN_RAW_STDERR"
TF_LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
NVIDIA_DEVICES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia")

_GLOG = rb"[IWEF]\d{4} \S+ +\d+ [\w.]+:\d+\] "  # TF/absl's prefix: severity, date, time, thread
_ALWAYS = [
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    _GLOG + rb"oneDNN custom operations are on\. ",
    _GLOG + rb"Could not find cuda drivers on your machine, GPU will not be used\.",
    _GLOG + rb"This TensorFlow binary is optimized to use available CPU instructions ",
    rb"To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler",
    _GLOG + rb"oneDNN supports DT_HALF only on platforms with AVX-512\. Falling back",
    rb".*\d+ out of the last \d+ calls to .* triggered tf\.function retracing\. ",
]
_WITHOUT_GPU = [_GLOG + rb"failed call to cuInit: "]
# An unterminated tail that starts like this may become a noise line: hold it until its end.
_MAY_BE_NOISE = re.compile(rb"^(?:[IWEF]\d{0,4}(?: |$)|W|To enable|\d{1,2}(?::|$))")
_LINES = re.compile(rb"(?<=\n)|(?<=\r)(?!\n)")  # split after \n, \r\n or a lone \r


def has_nvidia_device() -> bool:
    return any(os.path.exists(path) for path in NVIDIA_DEVICES)


def noise_pattern(gpu_machine: bool) -> re.Pattern[bytes]:
    patterns = _ALWAYS + ([] if gpu_machine else _WITHOUT_GPU)
    return re.compile(rb"^(?:" + rb"|".join(patterns) + rb")")


class StderrFilter:
    """fd 2 through a filtering thread (see module docstring)."""

    def __init__(self, noise: re.Pattern[bytes]):
        self.noise = noise
        self._saved = os.dup(2)
        if os.isatty(2):
            self._read, write = os.openpty()
            tty.setraw(write)  # bytes as written: no \n -> \r\n, no echo
            with contextlib.suppress(OSError):  # the terminal's size, for progress bars
                size = fcntl.ioctl(self._saved, termios.TIOCGWINSZ, b"\0" * 8)
                fcntl.ioctl(write, termios.TIOCSWINSZ, size)
        else:
            self._read, write = os.pipe()
        sys.stderr.flush()
        os.dup2(write, 2)
        os.close(write)
        self._thread = threading.Thread(target=self._pump, name="stderr-filter", daemon=True)
        self._thread.start()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._saved, view) :]
            except InterruptedError:
                continue
            except OSError:  # the real stderr is gone: nothing left to show anything on
                return

    def _kept(self, pending: bytes) -> tuple[bytes, bytes]:
        """(what to write now, the unterminated tail to hold)."""
        *lines, tail = _LINES.split(pending)
        kept = [line for line in lines if not self.noise.match(line)]
        if tail and not _MAY_BE_NOISE.match(tail):
            kept.append(tail)
            tail = b""
        return b"".join(kept), tail

    def _pump(self) -> None:
        pending = b""
        try:
            while True:
                try:
                    chunk = os.read(self._read, 1 << 16)
                except InterruptedError:
                    continue
                except OSError:  # a pseudo-terminal whose writers are all closed
                    chunk = b""
                if not chunk:
                    break
                out, pending = self._kept(pending + chunk)
                if out:
                    self._write(out)
            if pending and not self.noise.match(pending):
                self._write(pending)
        except BaseException:  # never leave writers blocked on a full pipe
            os.dup2(self._saved, 2)
            self._write(pending)
            raise

    def close(self, timeout_s: float = 2.0) -> None:
        """Restore fd 2 and let the thread copy what is left (children may still hold the
        pipe: wait at most `timeout_s`)."""
        with contextlib.suppress(ValueError, OSError):
            sys.stderr.flush()
        os.dup2(self._saved, 2)
        self._thread.join(timeout_s)


_installed: StderrFilter | None = None


def install() -> None:
    """Filter this process's stderr from now on (and its children's); idempotent."""
    global _installed
    if _installed is not None or os.environ.get(RAW_ENV, "") not in ("", "0"):
        return
    try:
        os.fstat(2)
    except OSError:  # no stderr at all
        return
    _installed = StderrFilter(noise_pattern(has_nvidia_device()))
    atexit.register(_installed.close)  # registered early, so it runs after later handlers


def quiet() -> None:
    """TensorFlow's C++ log level 2 (unless set: a user's choice wins) and the filter, for a
    process that has not loaded TensorFlow yet."""
    os.environ.setdefault(TF_LOG_LEVEL_ENV, "2")
    install()


def installed() -> bool:
    """Whether this process's stderr goes through the filter."""
    return _installed is not None
