"""The `cluster` setting: where the heavy stages run, parsed once.

    None / ""          one process, today's run (no Dask needed)
    "local:N"          a dask.distributed LocalCluster of N worker processes, one thread each,
                       started for the run and closed after it
    "tcp://HOST:PORT"  an existing Dask scheduler (workers started by `dask worker`)

    >>> parse_cluster("local:2")
    ClusterSpec(kind='local', workers=2, address='local:2')
    >>> parse_cluster("tcp://10.0.0.5:8786").kind
    'scheduler'

`Cluster` is the setting as a pydantic field: text is parsed once, where a config or a flow
parameter is validated, and the typed `ClusterSpec` travels from there (to the preflight, the
flows, the extraction report); it serialises back to its canonical text, so a deployment's
parameter schema and a run's config.json hold a plain string.

Only the parsing lives in the core; starting or reaching a cluster is the flows' business
(`inception_retrain.flows.cluster`), through prefect-dask's DaskTaskRunner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from inception_retrain.plumbing.errors import ConfigError

MAX_LOCAL_WORKERS = 256
_LOCAL = re.compile(r"^local:(\d+)$")
_SCHEDULER = re.compile(r"^(tcp|tls)://([^:/\s]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$")


@dataclass(frozen=True)
class ClusterSpec:
    kind: Literal["local", "scheduler"]
    workers: int | None  # local clusters only
    address: str  # the canonical text


def parse_cluster(text: str) -> ClusterSpec:
    text = text.strip()
    if match := _LOCAL.match(text):
        workers = int(match.group(1))
        if not 1 <= workers <= MAX_LOCAL_WORKERS:
            raise ConfigError(f"'{text}': local:N needs 1 <= N <= {MAX_LOCAL_WORKERS}")
        return ClusterSpec("local", workers, f"local:{workers}")
    if (match := _SCHEDULER.match(text)) and 0 < int(match.group(3)) < 65536:
        return ClusterSpec("scheduler", None, text)
    raise ConfigError(
        f"'{text}' is not a cluster: use 'local:N' (N worker processes) or "
        "'tcp://HOST:PORT' (a running Dask scheduler)"
    )


def _parsed(value):
    return parse_cluster(value) if isinstance(value, str) else value


def _parse_or_value_error(value):
    try:
        return _parsed(value)
    except ConfigError as error:  # pydantic reports a ValueError as a validation error
        raise ValueError(str(error)) from None


Cluster = Annotated[
    ClusterSpec,
    BeforeValidator(_parse_or_value_error),
    PlainSerializer(lambda spec: spec.address, return_type=str),
    WithJsonSchema({"type": "string", "description": "'local:N' or 'tcp://HOST:PORT'"}),
]
