"""Measurements behind the dropout-impact report: which layers does Dropout affect?

One module per group of measurements, each a set of plain functions on Keras layers and
numpy arrays that return typed values (dataclasses):

    chain.py        the trained head as a chain of layers; dropout masks made observable
    forward.py      F1: every layer's output with training=True vs False; masks, scaling
    backward.py     F2: gradients with a fixed mask, without dropout, and with rate 1
    frozen.py       F3: backbone weights and BatchNorm statistics before/after real fit steps
    backbone_reach.py  C6 inside a fine-tuned block: its layers' gradients, Dropout on vs off
    inference.py    F4: training=False determinism, MC-dropout uncertainty vs errors
    direct.py       C2 (dropout before/after activations) and C7 (noise_shape patterns)
    sweep_plan.py   the sweep's images (a capped stratified sample) and folds, from content ids
    sweep.py        the cross-fitted (rate, placement) x repeat x fold grid (C1, C2, C4, F4, F5)
    sweep_summary.py  what the sweep measured: per-training results, per-config statistics
    sweep_store.py  the sweep's results under WORKDIR/sweeps: a rerun reuses trained cells
    measurements.py all of the above for one run (`Measurements`)

and the report built on them:

    claims.py       the claims, the verdicts and kinds of claim, `Finding` and `Entry`
    evidence_spec.py  the deciding score and margins of the effect claims (`EvidenceSpec`)
    mechanisms.py   rules for the mechanism (deterministic, bit for bit)
    effects.py      rules for effects on this data (`evaluation.crossfit`) and for practice
    verdicts.py     every claim's findings, in report order
    prose.py        the answer in the question's terms; what each finding found
    layer_table.py  the first screen: a one-sentence answer and a row per layer, a column
                    per question (forward pass, gradients, weights at inference)
    wording.py      names for people on the pages: Dense(1024), not hidden_2; keys as words
    plots.py        matplotlib figures of the measurements
    report.py       dropout_impact.{json,md,html}

The stage entry that loads a run's artifacts and calls all of these is
`measure.dropout_report` (wrapped by `tasks.dropout_report`). The sweep's trainings run on
`training.reusable_head`.

May import: plumbing, data, features, training, evaluation.
"""
