"""The deployments of this project, defined once for `inception-retrain serve` and prefect.yaml.

    nightly-retrain  retrain/nightly-retrain              cron "0 2 * * *" in UTC, concurrency 1
    dropout-sweep    dropout-sweep/dropout-sweep          by hand: a bigger sweep on a run's cache
    batch-predict    batch-predict/batch-predict          by hand or by API

`serve_deployments()` serves them from this machine with `prefect.serve` (no work pool, no
worker); each flow run starts as its own `python -m prefect.engine` process, so TensorFlow
never runs in a forked or shared process. `prefect.yaml` at the repository root states the
same schedule, parameters and concurrency limit for `prefect deploy` with a work pool;
tests/test_prefect_server.py deploys it and checks that it agrees with the served deployment.

Concurrency: the limit is a deployment concurrency limit enforced by the Prefect server. A
run that finds the slot taken is moved to `Scheduled` / `AwaitingConcurrencySlot` (strategy
ENQUEUE) and retried after PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS (30 s by
default), so a manual trigger during a scheduled run waits for it instead of overlapping.

Parameters: `retrain` takes one parameter, `config` (a `RetrainConfig`); Prefect validates a
new flow run's parameters against its JSON schema when the run is created (HTTP 409 for a bad
value, so no run exists), and the flow validates them again with pydantic when it starts.
An override replaces the whole `config` object; fields it leaves out take the RetrainConfig
defaults.

    from inception_retrain.flows.deployments import build_deployments, serve_deployments
    serve_deployments()               # blocks; point PREFECT_API_URL at a server to see the UI
"""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron

NIGHTLY_RETRAIN = "nightly-retrain"
DROPOUT_SWEEP = "dropout-sweep"
BATCH_PREDICT = "batch-predict"
NIGHTLY_CRON = "0 2 * * *"
NIGHTLY_TIMEZONE = "UTC"
# ENQUEUE: a run that finds the slot taken waits (AwaitingConcurrencySlot), it is not cancelled.
NIGHTLY_CONCURRENCY = ConcurrencyLimitConfig(
    limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
)
# The values a nightly job must state; every other field takes its RetrainConfig default.
NIGHTLY_CONFIG: dict[str, Any] = {"data": "demo", "weights": "random:0", "workdir": "workdir"}


def nightly_parameters(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The default parameters of nightly-retrain, `{"config": {...}}`, plus config overrides."""
    return {"config": {**NIGHTLY_CONFIG, **(overrides or {})}}


def build_deployments(config_overrides: dict[str, Any] | None = None) -> list[RunnerDeployment]:
    """The deployments `serve` serves; `config_overrides` change nightly-retrain's defaults."""
    from inception_retrain.flows.predict import batch_predict
    from inception_retrain.flows.retrain import retrain
    from inception_retrain.flows.sweep import dropout_sweep

    # Module-path entrypoints ("inception_retrain.flows.retrain.retrain") load from the
    # installed package, so the served runs do not depend on the directory `serve` started in.
    nightly = retrain.to_deployment(
        name=NIGHTLY_RETRAIN,
        description="Nightly retrain of the head on the configured data; never overlaps.",
        schedules=[Cron(NIGHTLY_CRON, timezone=NIGHTLY_TIMEZONE)],
        parameters=nightly_parameters(config_overrides),
        concurrency_limit=NIGHTLY_CONCURRENCY,
        tags=["inception-retrain", "retrain"],
        enforce_parameter_schema=True,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    sweep = dropout_sweep.to_deployment(
        name=DROPOUT_SWEEP,
        description="Train a dropout rate x placement grid on a run's cached features.",
        tags=["inception-retrain", "dropout"],
        enforce_parameter_schema=True,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    predict = batch_predict.to_deployment(
        name=BATCH_PREDICT,
        description="Score image files or folders with the champion (or a named) model.",
        tags=["inception-retrain", "predict"],
        enforce_parameter_schema=True,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    return [nightly, sweep, predict]


def serve_deployments(config_overrides: dict[str, Any] | None = None) -> None:
    """Serve every deployment from this process until interrupted (Ctrl-C / SIGTERM)."""
    from prefect import serve

    serve(*build_deployments(config_overrides))
