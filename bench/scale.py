"""Benchmark of scale-out (issue 13): extraction on Dask workers, scheduling cost, object store.

    python bench/scale.py                         # 256 images, about 4-6 minutes on 2 cores
    python bench/scale.py --images 512 --out results.json

In one run, on generated JPEG files (demo textures at 300-500 px, quality 90), ingested by the
real stage, with a seeded random InceptionV3 cut at mixed7 (150 px, float16 cache):
  (a) throughput of the single-process extraction stage (its streaming compute, as
      extract.json's compute_seconds), against the same images extracted through the
      pipeline's Dask path (`flows.extract.run_extraction`: Prefect task runs on a
      DaskTaskRunner) on a LocalCluster of 1 and 2 worker processes with one thread each;
      each cluster is warmed first (every worker has loaded TensorFlow and the backbone), so
      this is steady-state throughput; shards of `--shard-rows`;
  (b) the same images on 2 workers cut into 8, 32 and 128 shards: total time against the
      number of shards, and the least-squares slope (ms per extra shard); plus the round
      trip of a no-op Prefect task mapped over the same cluster, per task (the scheduling
      overhead alone: Prefect's task-run API calls and Dask's scheduling);
  (c) the object store: moto's S3-compatible server on 127.0.0.1 (started here), write and
      read of part-sized objects through `storage` (s3fs), MB/s and ms per object, next to
      the same on the local disk.
Machine-dependent and noisy on a shared machine: docs/benchmarks.md records the command and
the figures, docs/scaling.md works from them. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import numpy as np  # noqa: E402
from common import machine, write_jpegs  # noqa: E402


def config_for(data: Path, workdir: Path, shard_rows: int, **extra):
    from inception_retrain.config import RetrainConfig

    return RetrainConfig(
        data=str(data), workdir=str(workdir), weights="random:0", shard_rows=shard_rows, **extra
    )


def single_process(manifest, data: Path, root: Path) -> dict:
    from inception_retrain.features.extraction import extract_features

    run = root / "single"
    started = time.perf_counter()
    extract_features(manifest, config_for(data, run / "work", 256).extraction, run)
    report = json.loads((run / "extract.json").read_text())
    shutil.rmtree(run)
    return {
        "images": report["computed"],
        "compute_s": report["compute_seconds"],
        "stage_s": time.perf_counter() - started,
        "img_s": report["computed"] / report["compute_seconds"],
    }


def on_cluster(manifest, data: Path, root: Path, address: str, shard_rows: int, tag: str):
    """One extraction through the pipeline's Dask path into a fresh cache; its report."""
    from inception_retrain.flows.extract import run_extraction

    run = root / tag
    config = config_for(data, run / "work", shard_rows)
    started = time.perf_counter()
    run_extraction(manifest, config.extraction, run, address)
    wall = time.perf_counter() - started
    report = json.loads((run / "extract.json").read_text())
    shutil.rmtree(run)
    return {
        "images": report["computed"],
        "shards": report["shards"],
        "shard_rows": shard_rows,
        "wall_s": wall,
        "compute_s": report["compute_seconds"],
        "img_s": report["computed"] / report["compute_seconds"],
        "worker_processes": report["worker_processes"],
        "backbone_loads_per_process": report["backbone_loads_per_process"],
    }


def noop_round_trip(address: str, counts: list[int]) -> list[dict]:
    """Seconds to map a no-op Prefect task over `n` items on the cluster, per n."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    from inception_retrain.flows.cluster import task_runner

    @task(cache_policy=NO_CACHE)
    def noop(index: int) -> int:
        return index

    @flow
    def fan_out(n: int) -> float:
        started = time.perf_counter()
        assert [f.result() for f in noop.map(range(n))] == list(range(n))
        return time.perf_counter() - started

    results = []
    for n in counts:
        seconds = fan_out.with_options(task_runner=task_runner(address))(n)
        results.append({"tasks": n, "seconds": seconds, "ms_per_task": 1000 * seconds / n})
    return results


def measure_extraction(manifest, data: Path, root: Path, shard_rows: int, workers: list[int]):
    from inception_retrain.data.manifest import read_image_rows
    from inception_retrain.flows.cluster import dask_cluster
    from inception_retrain.plumbing.cluster_spec import parse_cluster

    n = len(read_image_rows(manifest.path))
    results = {"single": single_process(manifest, data, root), "clusters": [], "shards": []}
    print(f"single process: {results['single']}", file=sys.stderr)
    for count in workers:
        with dask_cluster(parse_cluster(f"local:{count}")) as address:
            # Warm-up: every worker loads TensorFlow and the backbone once (not timed).
            on_cluster(manifest, data, root, address, max(1, n // (4 * count)), "warm")
            measured = on_cluster(manifest, data, root, address, shard_rows, f"w{count}")
            results["clusters"].append({"workers": count, **measured})
            print(f"{count} worker(s): {measured}", file=sys.stderr)
            if count == max(workers):
                for shards in (8, 32, 128):
                    rows = max(1, -(-n // shards))
                    entry = on_cluster(manifest, data, root, address, rows, f"s{shards}")
                    results["shards"].append(entry)
                    print(f"{shards} shards: {entry}", file=sys.stderr)
                results["noop"] = noop_round_trip(address, [8, 32, 128])
                print(f"no-op tasks: {results['noop']}", file=sys.stderr)
    x = np.array([e["shards"] for e in results["shards"]], float)
    y = np.array([e["compute_s"] for e in results["shards"]], float)
    slope, intercept = np.polyfit(x, y, 1)
    results["ms_per_extra_shard"] = 1000 * slope
    results["fixed_s"] = intercept
    return results


# --- (c) the object store ------------------------------------------------------------------------


def measure_object_store(root: Path, object_mb: float, objects: int) -> dict:
    import boto3

    from inception_retrain.plumbing import storage

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    moto = Path(sys.executable).parent / "moto_server"
    command = [str(moto), "-H", "127.0.0.1", "-p", str(port)]
    with open(root / "moto.log", "wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.create_bucket(Bucket="bench")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        payload = np.random.default_rng(0).bytes(int(object_mb * 2**20))  # parts are compressed
        results = {"object_mb": object_mb, "objects": objects}
        for name, base in (("s3 (moto, 127.0.0.1)", "s3://bench/objects"), ("local disk", root)):
            write, read, small = [], [], []
            for i in range(objects):
                target = storage.join(base, f"object-{i}.bin")
                started = time.perf_counter()
                storage.write_bytes(target, payload)
                write.append(time.perf_counter() - started)
            for i in range(objects):
                started = time.perf_counter()
                assert len(storage.read_bytes(storage.join(base, f"object-{i}.bin"))) == len(
                    payload
                )
                read.append(time.perf_counter() - started)
            for i in range(objects):  # a backbone.json-sized object: the per-request cost
                started = time.perf_counter()
                storage.write_bytes(storage.join(base, f"small-{i}.json"), b"{}" * 512)
                small.append(time.perf_counter() - started)
            results[name] = {
                "write_mb_s": object_mb * objects / sum(write),
                "read_mb_s": object_mb * objects / sum(read),
                "write_ms_per_object": 1000 * statistics.median(write),
                "read_ms_per_object": 1000 * statistics.median(read),
                "small_write_ms": 1000 * statistics.median(small),
            }
            print(f"{name}: {results[name]}", file=sys.stderr)
        return results
    finally:
        server.terminate()
        server.wait(timeout=30)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the tables ----------------------------------------------------------------------------------


def tables(results: dict) -> str:
    single = results["extraction"]["single"]
    lines = [
        "| way | images | img/s | vs one process |",
        "| --- | --- | --- | --- |",
        f"| one process (the stage's streaming compute) | {single['images']} | "
        f"{single['img_s']:.1f} | 1.00 |",
    ]
    for entry in results["extraction"]["clusters"]:
        lines.append(
            f"| Dask, {entry['workers']} worker process(es) x 1 thread, {entry['shards']} "
            f"shards of {entry['shard_rows']} | {entry['images']} | {entry['img_s']:.1f} | "
            f"{entry['img_s'] / single['img_s']:.2f} |"
        )
    lines += [
        "",
        "| shards (2 workers, same images) | rows per shard | seconds | img/s |",
        "| --- | --- | --- | --- |",
    ]
    for entry in results["extraction"]["shards"]:
        lines.append(
            f"| {entry['shards']} | {entry['shard_rows']} | {entry['compute_s']:.2f} | "
            f"{entry['img_s']:.1f} |"
        )
    extraction = results["extraction"]
    lines.append(
        f"\nLeast-squares slope: {extraction['ms_per_extra_shard']:.0f} ms per extra shard "
        f"(fixed part {extraction['fixed_s']:.2f} s)."
    )
    lines += ["", "| no-op Prefect tasks mapped | seconds | ms per task |", "| --- | --- | --- |"]
    for entry in extraction["noop"]:
        lines.append(f"| {entry['tasks']} | {entry['seconds']:.2f} | {entry['ms_per_task']:.1f} |")
    store = results["object_store"]
    lines += [
        "",
        f"| store ({store['objects']} objects of {store['object_mb']} MiB) | write MB/s | "
        "read MB/s | write ms/object | read ms/object | 1 KB write ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("s3 (moto, 127.0.0.1)", "local disk"):
        s = store[name]
        lines.append(
            f"| {name} | {s['write_mb_s']:.0f} | {s['read_mb_s']:.0f} | "
            f"{s['write_ms_per_object']:.1f} | {s['read_ms_per_object']:.1f} | "
            f"{s['small_write_ms']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--shard-rows", type=int, default=32, help="rows per shard for (a)")
    parser.add_argument("--workers", default="1,2", help="worker processes to measure")
    parser.add_argument("--object-mb", type=float, default=9.0, help="(c): object size, MiB")
    parser.add_argument("--objects", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()

    from inception_retrain.data.ingest import ingest

    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "command": "python bench/scale.py " + " ".join(sys.argv[1:])}
    data = root / "data"
    write_jpegs(data, args.images)
    manifest = ingest(config_for(data, root / "ingest-work", 256).ingest, root / "run-ingest")
    workers = [int(w) for w in args.workers.split(",")]
    results["extraction"] = measure_extraction(manifest, data, root, args.shard_rows, workers)
    results["object_store"] = measure_object_store(root, args.object_mb, args.objects)
    results["machine"]["load_average_end"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    m = results["machine"]
    print(
        f"\nMachine: {m['cpu']}, {m['cores']} cores; load average "
        f"{m['load_average_start'][0]:.1f} at start, {m['load_average_end'][0]:.1f} at end"
    )
    print(tables(results))


if __name__ == "__main__":
    main()
