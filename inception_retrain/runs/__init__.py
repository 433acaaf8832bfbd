"""Runs: a run's life in a workdir, from its inputs' check to what it leaves behind.

Owns: the preflight check of a run's inputs (`preflight`), a run folder and its
config.json, status.json and failure.json (`run_folder`), one run per workdir and the
clean-up after dead runs (`workdir`), a finished run's artifacts read back
(`finished_run`), and which earlier data the data checks compare with (`data_reference`).

May import: plumbing, data, features, training, evaluation, dropout, registry.
"""
