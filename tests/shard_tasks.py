"""A flow of small shard tasks for tests/test_shards.py, importable by `dask worker`s (their
PYTHONPATH holds tests/): a shard can stall once, stall always, or run.

A stalled shard blocks in C (`time.sleep`), as a stuck TensorFlow op would: neither
Prefect's time-out nor `client.cancel` can stop it. Before it stalls it writes its worker's
pid into the `stall` file, so the test knows where it hangs and that it has started; a
rerun (the file now exists) runs normally.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from inception_retrain.flows.shards import run_shards
from inception_retrain.plumbing.shard_policy import ShardPolicy

EVENTS: list[dict] = []  # what the last flow's run_shards noted


@task(name="test-shard", task_run_name="test-shard-{item}", cache_policy=NO_CACHE)
def shard_task(item: int, stall_item: int, stall: str, mode: str) -> int:
    if item == stall_item and (mode == "always" or not Path(stall).exists()):
        Path(stall).write_text(str(os.getpid()))
        time.sleep(10**6)  # one blocking call: a hung shard
    time.sleep(0.5)
    return item * 10


@flow(name="test-shards")
def shards_flow(items: list[int], policy: ShardPolicy, stall_item: int, stall: str, mode: str):
    EVENTS.clear()
    return run_shards(
        lambda item: shard_task.submit(item, stall_item, stall, mode),
        items,
        policy,
        events=EVENTS,
    )
