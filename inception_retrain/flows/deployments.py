"""The deployments of this project, defined once for `inception-retrain serve` and prefect.yaml.

    nightly-retrain  retrain/nightly-retrain              cron "0 2 * * *" in UTC, concurrency 1
    dropout-sweep    dropout-sweep/dropout-sweep          by hand: a bigger sweep on a run's cache
    batch-predict    batch-predict/batch-predict          by hand or by API

The schedule is defined here once (`NIGHTLY_CRON`, `NIGHTLY_TIMEZONE`) and set elsewhere as
an override: `inception-retrain serve --cron "30 3 * * *" --timezone Europe/Paris`, or for
`prefect deploy`, prefect.yaml generated with the same options
(`inception-retrain prefect-yaml --cron ... > prefect.yaml`; the committed file is this
module's default output, which tests/test_flow.py checks).

`serve_deployments()` serves them from this machine with `prefect.serve` (no work pool, no
worker); each flow run starts as its own `python -m prefect.engine` process, so TensorFlow
never runs in a forked or shared process. `prefect.yaml` at the repository root, generated
from `DEPLOYMENTS` by `prefect_yaml()`, states the same schedule, parameters and concurrency
limit for `prefect deploy` with a work pool; tests/test_prefect_server.py deploys it and
checks that it agrees with the served deployment.

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

import importlib
from dataclasses import dataclass
from typing import Any

import yaml
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron

from inception_retrain.config import NIGHTLY_CRON, NIGHTLY_TIMEZONE

NIGHTLY_RETRAIN = "nightly-retrain"
DROPOUT_SWEEP = "dropout-sweep"
BATCH_PREDICT = "batch-predict"
# ENQUEUE: a run that finds the slot taken waits (AwaitingConcurrencySlot), it is not cancelled.
NIGHTLY_CONCURRENCY = ConcurrencyLimitConfig(
    limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
)
# The values a nightly job must state; every other field takes its RetrainConfig default.
NIGHTLY_CONFIG: dict[str, Any] = {"data": "demo", "weights": "random:0", "workdir": "workdir"}
WORK_POOL = "inception-retrain"  # prefect.yaml's process work pool


@dataclass(frozen=True)
class Deployment:
    """What serve and prefect.yaml share about a deployment."""

    name: str
    module: str  # the flow's module; its file is the module's path
    flow: str  # the flow function's name
    description: str
    tags: tuple[str, ...]
    scheduled: bool = False  # the nightly schedule, concurrency 1 and NIGHTLY_CONFIG

    @property
    def entrypoint_path(self) -> str:
        return f"{self.module.replace('.', '/')}.py:{self.flow}"


DEPLOYMENTS = (
    Deployment(
        NIGHTLY_RETRAIN,
        "inception_retrain.flows.retrain",
        "retrain",
        "Nightly retrain of the head on the configured data; never overlaps.",
        ("inception-retrain", "retrain"),
        scheduled=True,
    ),
    Deployment(
        DROPOUT_SWEEP,
        "inception_retrain.flows.sweep",
        "dropout_sweep",
        "Train a dropout rate x placement grid on a run's cached features.",
        ("inception-retrain", "dropout"),
    ),
    Deployment(
        BATCH_PREDICT,
        "inception_retrain.flows.predict",
        "batch_predict",
        "Score image files or folders with the champion (or a named) model.",
        ("inception-retrain", "predict"),
    ),
)


def nightly_parameters(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The default parameters of nightly-retrain, `{"config": {...}}`, plus config overrides."""
    return {"config": {**NIGHTLY_CONFIG, **(overrides or {})}}


def build_deployments(
    config_overrides: dict[str, Any] | None = None,
    cron: str = NIGHTLY_CRON,
    timezone: str = NIGHTLY_TIMEZONE,
) -> list[RunnerDeployment]:
    """The deployments `serve` serves; `config_overrides` change nightly-retrain's defaults,
    `cron` and `timezone` its schedule."""
    deployments = []
    for spec in DEPLOYMENTS:
        flow = getattr(importlib.import_module(spec.module), spec.flow)
        scheduled = (
            {
                "schedules": [Cron(cron, timezone=timezone)],
                "parameters": nightly_parameters(config_overrides),
                "concurrency_limit": NIGHTLY_CONCURRENCY,
            }
            if spec.scheduled
            else {}
        )
        # Module-path entrypoints ("inception_retrain.flows.retrain.retrain") load from the
        # installed package, so the served runs do not depend on the directory serve started in.
        deployments.append(
            flow.to_deployment(
                name=spec.name,
                description=spec.description,
                tags=list(spec.tags),
                enforce_parameter_schema=True,
                entrypoint_type=EntrypointType.MODULE_PATH,
                **scheduled,
            )
        )
    return deployments


def serve_deployments(
    config_overrides: dict[str, Any] | None = None,
    cron: str = NIGHTLY_CRON,
    timezone: str = NIGHTLY_TIMEZONE,
) -> None:
    """Serve every deployment from this process until interrupted (Ctrl-C / SIGTERM)."""
    from prefect import serve

    serve(*build_deployments(config_overrides, cron, timezone))


PREFECT_YAML_HEADER = """\
# Deploy-time configuration for `prefect deploy` (Prefect 3.9), with a process work pool:
#
#   prefect work-pool create inception-retrain --type process
#   prefect deploy --all                      # run from the repository root
#   prefect worker start --pool inception-retrain
#
# Without a work pool, `inception-retrain serve` serves the same deployments from one machine.
# GENERATED from inception_retrain/flows/deployments.py, where the deployments are defined
# once: `inception-retrain prefect-yaml [--cron ...] [--timezone ...] > prefect.yaml`.
# tests/test_flow.py checks that this file is that command's default output, and
# tests/test_prefect_server.py deploys it and compares it with the served deployments.
# No pull section: `prefect deploy` records the directory it runs in as the working directory.
"""


def prefect_yaml(cron: str = NIGHTLY_CRON, timezone: str = NIGHTLY_TIMEZONE) -> str:
    """prefect.yaml for `prefect deploy`: the same deployments `serve` serves."""
    entries = []
    for spec in DEPLOYMENTS:
        entry: dict[str, Any] = {
            "name": spec.name,
            "description": spec.description,
            "entrypoint": spec.entrypoint_path,
            "tags": list(spec.tags),
        }
        if spec.scheduled:
            entry["schedules"] = [{"cron": cron, "timezone": timezone, "active": True}]
            entry["concurrency_limit"] = {
                "limit": NIGHTLY_CONCURRENCY.limit,
                "collision_strategy": NIGHTLY_CONCURRENCY.collision_strategy.value,
            }
            entry["parameters"] = nightly_parameters()
        entry["enforce_parameter_schema"] = True
        entry["work_pool"] = {"name": WORK_POOL}
        entries.append(entry)
    document = {"name": "inception-retrain", "prefect-version": "3.9.1", "deployments": entries}
    return PREFECT_YAML_HEADER + yaml.safe_dump(document, sort_keys=False, width=100)
