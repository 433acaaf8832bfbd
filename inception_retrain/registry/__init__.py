"""Registry: model versions, the champion, and the models people use.

Owns: the registry's storage, versions and champion pointer (`versions`), the champion a
promotion compares with, recovered or refused when the pointer is damaged (`champion_gate`),
the promotion decision and its policy (`promotion`, `promotion_policy`), export of a self-contained
inference model (`export`) and batch prediction with it (`predict`).

May import: plumbing, data, features, training, evaluation, dropout.
"""
