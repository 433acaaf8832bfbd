"""tf.data options shared by the pipelines that feed TensorFlow (extraction, training)."""

from __future__ import annotations


def without_autotune(dataset):
    """`dataset` with tf.data's autotuning off; the pipeline must set its own buffer sizes
    and parallelism.

    Measured on this 2-core machine: with autotuning on, about one epoch (or extraction run)
    in three ran at half speed, with one core idle and the same CPU time; with it off, none
    did (bench/train.py, bench/extract.py; docs/benchmarks.md).
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)
