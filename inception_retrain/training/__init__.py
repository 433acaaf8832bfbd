"""Training: the Dense/Dropout head fitted on cached features.

Owns: the head's spec and model (`head_spec`, `head`, `fused_rmsprop`), the training data
read from the cache (`training_data`), the one training loop (`fit`, `early_stopping`,
`checkpoint`, `device`), the training stage and its spec (`train`, `training_spec`), the
features standardised per feature and folded into Dense(512) when saved (`standardize`), the
compiled head reused by many short trainings in one process (`reusable_head`), and
fine-tuning: the top block(s) trained with the head on a cached prefix (`fine_tune`,
`fine_tune_spec`).

May import: plumbing, data, features.
"""
