"""`ShardPolicy`: how long a shard of work on a Dask cluster may take, and how often it runs.

    >>> policy = ShardPolicy()
    >>> policy.timeout_s, policy.start_timeout_s, policy.attempts, policy.retries
    (600.0, 300.0, 2, 2)

Defined once, here, for every fan-out on a cluster (extraction shards, prediction shards,
sweep trainings); the config's `shard_timeout_s`, `shard_start_timeout_s`, `shard_attempts`
and `shard_retries` set it, and the flows enforce it (`flows/shards.py`):
  * `timeout_s`: from the moment a worker's thread starts the shard (its first shard on a
    worker includes loading the backbone) until it finishes;
  * `start_timeout_s`: from submission until a worker's thread starts it (a new worker's
    start-up, or no worker at all);
  * `attempts`: runs of a shard in all; a shard past a deadline is cancelled, its worker
    process replaced, and it runs again until this many runs have failed to finish in time;
  * `retries`: Prefect's retries of a shard task that raised an unexpected error (a lost
    connection, a flaky object store) inside one run, within its time-out
    (`tasks.runtime.SHARD_RETRIES`: its delays and which errors count).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ShardPolicy(BaseModel):
    """Time-outs and attempts of one shard on a cluster (see module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(600.0, gt=0)
    start_timeout_s: float = Field(300.0, gt=0)
    attempts: int = Field(2, ge=1, le=10)
    retries: int = Field(2, ge=0, le=10)
