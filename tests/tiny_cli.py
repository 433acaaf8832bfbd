"""The smallest settings of a whole `inception-retrain run` that still run every stage: the
tests that start real CLI runs share them, so a renamed option is changed in one place."""

# A dropout sweep of 2 configs x 2 folds x 1 repeat, one epoch each, 2 MC passes.
TINY_SWEEP = [
    "--sweep-rates",
    "0,0.5",
    "--sweep-placements",
    "after_dense2",
    "--sweep-folds",
    "2",
    "--sweep-repeats",
    "1",
    "--sweep-epochs",
    "1",
    "--mc-passes",
    "2",
]
