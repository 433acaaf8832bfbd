"""Evaluation: how good a trained head is, and the statistics that say how sure we are.

Owns: metrics (`metrics`), paired statistics over seeds and AUROC tests (`statistics`),
paired per-image comparisons of two learners, cross-fitted or on one split, and the one
verdict rule (`crossfit`), scoring cached
features (`scoring`, `predictions`), the evaluate stage and `evaluation.json` (`evaluate`),
its plots and report (`plots`, `report`, `figures`, the jinja2 templates of every report in
`reports/`), the measured effect of augmented views (`augmentation_effect`), the choice
between the head alone and the fine-tuned model with their paired per-image comparison on
test (`fine_tuning_effect`, `paired_images`), drift of the cached features (`drift`), the
data report deciding every data check (`data_report`, `data_plots`), and the test split's
metrics by slice (`slices`, `slice_spec`).

May import: plumbing, data, features, training.
"""
