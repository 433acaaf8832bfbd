"""Prefect flows: they only wire the stages of `inception_retrain.tasks` together.

retrain.py         the retrain pipeline (ingest ... report), one run folder per run
sweep.py           the dropout sweep, one task run per training it computes
dropout_report.py  a finished run's dropout report, built again (more seeds, other cells)
predict.py         batch prediction with a registered model
deployments.py     the deployments `inception-retrain serve` and prefect.yaml define
"""
