"""inception-retrain: which layers does a Dropout layer actually affect? Measured, on a schedule."""

import os

__version__ = "0.1.0"

# TensorFlow's default CPU allocator returns every buffer above glibc's 32 MB mmap threshold to
# the OS, so each head-training step page-faults its 77 MB gradient and temporaries back in
# (measured: epochs 1.3-2x slower, and bimodal). Its BFC pool keeps them. It must be set
# before TensorFlow starts, which every stage module does after importing this package; a
# value the user set wins.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
