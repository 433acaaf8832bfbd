"""The CLI's stderr filter: TensorFlow's known noise dropped, everything else kept, in order.

A child process installs the filter and writes what TensorFlow and Keras write on a CPU
machine (recorded from real runs), real errors, a progress bar's unterminated updates and a
last line at exit. Its stderr is read through a pipe and through a pseudo-terminal, as a
user's terminal would show it. The real TensorFlow run is in tests/test_lifecycle.py.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys

import pytest

NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1796167989.672988   32705 port.cc:153] oneDNN custom operations are on. You "
    b"may see slightly different numerical results due to floating-point round-off errors.\n",
    b"I0000 00:00:1796167989.674025   32705 cudart_stub.cc:31] Could not find cuda drivers on "
    b"your machine, GPU will not be used.\n",
    b"I0000 00:00:1796167953.912108   32142 cpu_feature_guard.cc:227] This TensorFlow binary is "
    b"optimized to use available CPU instructions in performance-critical operations.\n",
    b"To enable the following instructions: AVX2 AVX512F AVX512_VNNI FMA, in other operations, "
    b"rebuild TensorFlow with the appropriate compiler flags.\n",
    b"E0000 00:00:1796168014.949806   32705 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    b"CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n",
    b"E0000 00:00:1796168019.893932   32705 util.cc:131] oneDNN supports DT_HALF only on "
    b"platforms with AVX-512. Falling back to the default Eigen-based implementation.\n",
    b"23:33:51.407 | WARNING | tensorflow - 5 out of the last 5 calls to <function TensorFlow"
    b"Trainer._make_function.<locals>.multi_step_on_iterator at 0x7fa68e013560> triggered "
    b"tf.function retracing. Tracing is expensive and the excessive number of tracings ...\n",
]
KEPT = [
    b"E0000 00:00:1796168014.949806   32705 bfc_allocator.cc:52] Allocator ran out of memory\n",
    b"W0000 00:00:1796168014.949806   32705 op_kernel.cc:1857] OP_REQUIRES failed: disk full\n",
    b"extract:  50%|#####     | 10/20 [00:01<00:01, 9.9img/s]\r",
    b"23:33:52.001 | ERROR   | Flow run 'x' - extract failed: weights file w.h5 is missing\n",
]
CHILD = """
import os, sys, time
from inception_retrain.plumbing.stderr_filter import install
install()
chunks = [bytes.fromhex(h) for h in sys.argv[1:]]
for chunk in chunks:
    half = len(chunk) // 2  # a line may arrive in two writes
    os.write(2, chunk[:half]); time.sleep(0.01); os.write(2, chunk[half:])
print("error: the last line", file=sys.stderr)
"""


def interleaved() -> list[bytes]:
    lines = []
    for i, noise in enumerate(NOISE):
        lines.append(noise)
        lines.append(KEPT[i % len(KEPT)])
    return lines


def expected(lines: list[bytes]) -> bytes:
    from inception_retrain.plumbing.stderr_filter import has_nvidia_device

    # Where an NVIDIA device exists, a failed cuInit is a real error and stays.
    noise = [n for n in NOISE if not (has_nvidia_device() and b"cuInit" in n)]
    return b"".join(line for line in lines if line not in noise) + b"error: the last line\n"


def test_noise_is_dropped_and_the_rest_kept_in_order_through_a_pipe():
    lines = interleaved()
    env = {k: v for k, v in os.environ.items() if k != "INCEPTION_RETRAIN_RAW_STDERR"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *(line.hex() for line in lines)],
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stderr == expected(lines)


def test_a_terminal_stays_a_terminal_and_sees_the_same():
    lines = interleaved()
    primary, secondary = pty.openpty()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os; assert os.isatty(2)\n" + CHILD,
            *(line.hex() for line in lines),
        ],
        stderr=secondary,
        stdout=subprocess.DEVNULL,
    )
    os.close(secondary)
    seen = b""
    while select.select([primary], [], [], 30)[0]:
        try:
            chunk = os.read(primary, 1 << 16)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert child.wait(timeout=60) == 0
    # The outer terminal turns \n into \r\n, as on screen.
    assert seen == expected(lines).replace(b"\n", b"\r\n")


@pytest.mark.parametrize("value", ["1", "yes"])
def test_it_can_be_turned_off(value):
    lines = interleaved()
    env = {**os.environ, "INCEPTION_RETRAIN_RAW_STDERR": value}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *(line.hex() for line in lines)],
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert done.stderr == b"".join(lines) + b"error: the last line\n"
