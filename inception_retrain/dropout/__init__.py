"""Measurements behind the dropout-impact report: which layers does Dropout affect?

One module per group of measurements, each a set of plain functions on Keras layers and
numpy arrays that return JSON-able dicts of numbers:

    chain.py      the trained head as a chain of layers; dropout masks made observable
    forward.py    F1: every layer's output with training=True vs False; masks, scaling
    backward.py   F2: gradients with a fixed mask, without dropout, and with rate 1
    frozen.py     F3: backbone weights and BatchNorm statistics before/after real fit steps
    inference.py  F4: training=False determinism, MC-dropout uncertainty vs errors
    sweep.py      F5: rate x placement x seed grid trained on cached features (C1, C4)
    sweep_store.py  F5's result cache under WORKDIR/sweeps: a rerun reuses trained cells
    direct.py     C2 (dropout before/after activations) and C7 (noise_shape patterns)
    verdicts.py   the claims' texts and the rules that turn numbers into verdicts
    plots.py      matplotlib figures of the measurements
    report.py     dropout_impact.{json,md,html}: the answer first, then claim by claim

The stage entry that loads a run's artifacts and calls all of these is
`tasks.dropout_report.dropout_report`.
"""
