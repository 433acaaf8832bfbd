"""Prefect flows: they only wire the stages of `inception_retrain.tasks` together.

retrain.py         the retrain pipeline (ingest ... report), one run folder per run
sweep.py           the dropout sweep, one task run per training it computes
dropout_report.py  a finished run's dropout report, built again (more seeds, other cells)
predict.py         batch prediction with a registered model
deployments.py     the deployments `inception-retrain serve` and prefect.yaml define
extract.py         extraction on a Dask cluster, one task run per shard
shards.py          shard task runs on Dask with time-outs, enforced from the flow's side
cluster.py         where the heavy stages run: this process, or a Dask cluster

A flow run that a deployment's worker starts (`prefect worker`, `serve`) is a process of its
own that imports its flow module before anything else, and Prefect marks it with
PREFECT__FLOW_RUN_ID. Importing this package there installs the stderr filter
(`plumbing.stderr_filter`), before any stage imports TensorFlow, so that run's output is as
quiet as the CLI's. Anywhere else (the CLI, tests, a notebook) importing a flow changes nothing.
"""

import os

from inception_retrain.plumbing import stderr_filter

FLOW_RUN_ENV = "PREFECT__FLOW_RUN_ID"

if os.environ.get(FLOW_RUN_ENV):
    stderr_filter.quiet()
