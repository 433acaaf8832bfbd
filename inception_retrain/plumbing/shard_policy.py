"""`ShardPolicy`: how long a shard of work on a Dask cluster may take, and how often it runs.

    >>> ShardPolicy().timeout_s, ShardPolicy().start_timeout_s, ShardPolicy().attempts
    (600.0, 300.0, 2)

Defined once, here, for every fan-out on a cluster (extraction shards, prediction shards,
sweep trainings); the config's `shard_timeout_s`, `shard_start_timeout_s` and
`shard_attempts` set it, and the flows enforce it (`flows/shards.py`):
  * `timeout_s`: from the moment a worker's thread starts the shard (its first shard on a
    worker includes loading the backbone) until it finishes;
  * `start_timeout_s`: from submission until a worker's thread starts it (a new worker's
    start-up, or no worker at all);
  * `attempts`: runs of a shard in all; a shard past a deadline is cancelled, its worker
    process replaced, and it runs again until this many runs have failed to finish in time.
A task that fails with an exception is retried by Prefect inside one run
(`tasks.runtime.SHARD_RETRIES`), within its time-out.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ShardPolicy(BaseModel):
    """Time-outs and attempts of one shard on a cluster (see module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(600.0, gt=0)
    start_timeout_s: float = Field(300.0, gt=0)
    attempts: int = Field(2, ge=1, le=10)
