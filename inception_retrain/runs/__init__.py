"""Runs: a run's life in a workdir, from its inputs' check to what it leaves behind.

Owns: the preflight check of a run's inputs (`preflight`), a run folder and its
config.json, status.json and failure.json (`run_folder`), one run per workdir and the
clean-up after dead runs (`workdir`), and a finished run's artifacts read back
(`finished_run`).

May import: plumbing, data, features, training, evaluation, dropout, registry.
"""
