"""Benchmark of the extraction stage (issue 3): throughput, storage, re-runs, memory.

    python bench/extract.py                      # 512 images, about 3-4 minutes on 2 cores
    python bench/extract.py --levers             # also batch size, tf.data, jit, writer levers
    python bench/extract.py --formats            # also the part formats: size, CPU per row
    python bench/extract.py --images 2048 --rss-sizes 1024,4096 --out results.json

In one run, on generated JPEG files (demo textures upscaled to 300-500 px, quality 90) and a
seeded random InceptionV3 cut at mixed7 (150 px):
  (a) bare backbone throughput on pre-decoded, preprocessed tensors (the compute limit);
  (b) streaming throughput from JPEG files on disk to Parquet parts on disk (same batch
      size, same traced function, so b/a isolates the pipeline's overhead), plus the whole
      stage's wall time (model load, fingerprint, cache check included);
  (c) b/a;
  (d) bytes on disk per image against raw float32 (37,632 x 4 bytes);
  (e) a re-run after adding 5% new images: images computed and wall time vs the full run
      (and a re-run with nothing new);
  (f) peak RSS of the whole stage for 2 dataset sizes, each in a fresh subprocess.
a and b alternate (`--repeats`), because the machine may be shared: compare ratios, not
absolute numbers. Nothing here is a test; targets are printed next to the results.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
from common import machine, write_jpegs  # noqa: E402
from extract_table import RAW_FLOAT32, table  # noqa: E402


def config_for(data: Path, workdir: Path, batch_size: int, dtype: str = "float16"):
    from inception_retrain.config import RetrainConfig

    return RetrainConfig(
        data=str(data),
        workdir=str(workdir),
        weights="random:0",
        extract_batch_size=batch_size,
        feature_dtype=dtype,
    )


# --- (a), (b) and the levers ------------------------------------------------------------------


class Bench:
    """One backbone and its traced inference functions, shared by every measurement: a and b
    call the very same function (same batch size, same output dtype)."""

    def __init__(self, rows, root: Path, batch_size: int, part_rows: int):
        from inception_retrain.features.backbone import (
            backbone_fingerprint,
            inference_function,
            load_backbone,
        )
        from inception_retrain.features.preprocess import image_dataset

        self.rows, self.root, self.part_rows = rows, root, part_rows
        self.backbone = load_backbone("random:0", "mixed7", 150)
        self.fingerprint, self.inputs = backbone_fingerprint(
            self.backbone, "random:0", "mixed7", 150
        )
        self.inference_function = inference_function
        self.infer = {}
        self.decoded = {}
        self.image_dataset = image_dataset
        self.counter = 0
        self._warm(False, "float16", batch_size)

    def _warm(self, jit: bool, dtype: str, batch_size: int):
        """The traced function for (jit, dtype), run once at this batch size (not timed)."""
        key = (jit, dtype)
        if key not in self.infer:
            self.infer[key] = self.inference_function(
                self.backbone, jit_compile=jit, output_dtype=dtype
            )
        self.infer[key](np.zeros((batch_size, 150, 150, 3), np.float32)).numpy()
        return self.infer[key]

    def bare(self, n: int, batch_size: int, jit: bool = False, dtype: str = "float16") -> dict:
        """(a) images/s of the backbone alone on pre-decoded tensors, per wall and CPU second."""
        key = (n, batch_size)
        if key not in self.decoded:
            self.decoded[key] = list(self.image_dataset(self.rows.uris[:n], 150, batch_size))
        infer = self._warm(jit, dtype, batch_size)
        started, cpu = time.perf_counter(), time.process_time()
        for images in self.decoded[key]:
            infer(images).numpy()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        return {"img_s": n / wall, "img_per_cpu_s": n / cpu}

    def streaming(self, n: int, batch_size: int, dtype="float16", jit=False, **knobs) -> dict:
        """(b) images/s from JPEG files to Parquet parts, in a fresh cache folder."""
        from inception_retrain.features.extraction import compute_missing
        from inception_retrain.features.feature_cache import cache_size
        from inception_retrain.features.feature_parts import feature_schema

        infer = self._warm(jit, dtype, batch_size)
        self.counter += 1
        cache_dir = self.root / f"stream-{self.counter}"
        schema = feature_schema((7, 7, 768), dtype, {"fingerprint": self.fingerprint})
        part_rows = knobs.pop("part_rows", self.part_rows)
        rows = self.rows.where([i < n for i in range(len(self.rows))])
        cpu = time.process_time()  # every thread of this process: TF, tf.data, the writer
        result = compute_missing(
            self.backbone,
            rows,
            cache_dir,
            schema,
            image_size=150,
            batch_size=batch_size,
            part_rows=part_rows,
            infer=infer,
            **knobs,
        )
        cpu = time.process_time() - cpu
        assert result.computed == n and not result.skipped, result
        _, size = cache_size(cache_dir)
        shutil.rmtree(cache_dir)
        return {
            "img_s": n / result.seconds,
            "img_per_cpu_s": n / cpu,
            "size_vs_raw": size / (n * RAW_FLOAT32),
        }


def measure_ab(bench: Bench, n: int, batch_size: int, repeats: int) -> dict:
    bare, stream = [], []
    for _ in range(repeats):  # alternate, so load from other users hits both alike
        bare.append(bench.bare(n, batch_size))
        stream.append(bench.streaming(n, batch_size))
    wall = [s["img_s"] / b["img_s"] for s, b in zip(stream, bare, strict=True)]
    cpu = [s["img_per_cpu_s"] / b["img_per_cpu_s"] for s, b in zip(stream, bare, strict=True)]
    return {
        "bare_img_s": [b["img_s"] for b in bare],
        "stream_img_s": [s["img_s"] for s in stream],
        "bare_img_per_cpu_s": [b["img_per_cpu_s"] for b in bare],
        "stream_img_per_cpu_s": [s["img_per_cpu_s"] for s in stream],
        "ratio_per_pair": wall,
        "ratio_median": statistics.median(wall),
        "cpu_ratio_per_pair": cpu,
        "cpu_ratio_median": statistics.median(cpu),
    }


# --- storage formats of a part: size and CPU per row to write and to read ---------------------

FORMATS = {
    # name: (features column as, encoding of that column)
    "v1: fixed-size list of float16 (the old format)": ("list", "PLAIN"),
    "fixed-size list of float16, BYTE_STREAM_SPLIT": ("list", "BYTE_STREAM_SPLIT"),
    "fixed-size binary, channels last": ("binary-hwc", "PLAIN"),
    "fixed-size binary, channels last, BYTE_STREAM_SPLIT": ("binary-hwc", "BYTE_STREAM_SPLIT"),
    "v2: fixed-size binary, channels first (the part format now)": ("binary", "PLAIN"),
    "fixed-size binary, channels first, BYTE_STREAM_SPLIT": ("binary", "BYTE_STREAM_SPLIT"),
}
SHAPE = (7, 7, 768)


def measure_formats(bench: Bench, n: int, batch_size: int, repeats: int = 5) -> list[dict]:
    """Each way of storing the same n rows of real float16 features (zstd, one part): bytes
    per image against raw float32, and process CPU ms per row to write and to read back into
    one NumPy array (median of `repeats`)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from inception_retrain.features.feature_parts import decode_features, encode_features

    infer = bench._warm(False, "float16", batch_size)
    images = bench.image_dataset(bench.rows.uris[:n], 150, batch_size)
    features = np.concatenate([infer(x).numpy().reshape(len(x), -1) for x in images])
    ids = pa.array([f"{i:064x}" for i in range(len(features))])
    results = []
    for name, (kind, encoding) in FORMATS.items():
        if kind == "list":
            values = pa.array(features.reshape(-1), pa.float16())
            item = pa.list_(pa.field("item", pa.float16(), nullable=False), features.shape[1])
            column = pa.FixedSizeListArray.from_arrays(values, type=item)
        elif kind == "binary-hwc":  # the values in the backbone's order, one copy
            flat = np.ascontiguousarray(features)
            column = pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(flat[0].nbytes), len(flat), [None, pa.py_buffer(flat)]
            )
        else:
            column = encode_features(features.reshape(-1, *SHAPE), "float16")
        table = pa.table({"content_id": ids, "features": column})
        writes, reads = [], []
        for _ in range(repeats):
            buffer = io.BytesIO()
            cpu = time.process_time()
            pq.write_table(
                table,
                buffer,
                compression="zstd",
                use_dictionary=["content_id"],
                column_encoding={"features": encoding},
                write_page_checksum=True,
            )
            writes.append(time.process_time() - cpu)
            data = buffer.getvalue()
            cpu = time.process_time()
            read = pq.read_table(pa.BufferReader(data)).column("features").combine_chunks()
            if kind == "list":
                back = read.flatten().to_numpy(zero_copy_only=False).reshape(len(read), -1)
            elif kind == "binary-hwc":
                back = np.frombuffer(read.buffers()[1], np.float16).reshape(len(read), -1)
            else:  # the consumer's copy (here into one contiguous array) reorders the view
                back = np.ascontiguousarray(decode_features(read, "float16", SHAPE))
            reads.append(time.process_time() - cpu)
            back = back.reshape(len(features), -1)
            assert np.array_equal(back.view(np.uint16), features.view(np.uint16))
        results.append(
            {
                "format": name,
                "size_vs_raw": len(data) / (len(features) * RAW_FLOAT32),
                "write_ms_per_row": 1000 * statistics.median(writes) / len(features),
                "read_ms_per_row": 1000 * statistics.median(reads) / len(features),
            }
        )
        print(f"  format {results[-1]}", file=sys.stderr)
    return results


def measure_levers(bench: Bench, n: int, batch_size: int) -> list[dict]:
    """Each lever next to a baseline measured right before it (pairs, same conditions)."""
    variants = [
        (
            f"baseline (bs {batch_size}, AUTOTUNE map+prefetch, writer thread, no jit, "
            f"parts of {bench.part_rows})",
            {},
        ),
        ("batch size 16", {"batch_size": 16}),
        ("batch size 64", {"batch_size": 64}),
        ("tf.data map parallel_calls=1", {"parallel_calls": 1}),
        ("tf.data map parallel_calls=2", {"parallel_calls": 2}),
        ("prefetch 1 batch", {"prefetch": 1}),
        ("jit_compile=True (XLA)", {"jit": True}),
        ("Parquet writes inline (no writer thread)", {"overlap_writes": False}),
        ("parts of 128 images", {"part_rows": 128}),
        ("parts of 512 images", {"part_rows": 512}),
        ("float32 storage", {"dtype": "float32"}),
    ]
    results = []
    for name, knobs in variants:
        knobs = dict(knobs)
        bs = knobs.pop("batch_size", batch_size)
        jit = knobs.get("jit", False)
        bare = bench.bare(n, bs, jit=jit, dtype=knobs.get("dtype", "float16"))
        stream = bench.streaming(n, bs, **knobs)
        is_baseline = not knobs and bs == batch_size
        base = stream if is_baseline else bench.streaming(n, batch_size)
        results.append(
            {
                "lever": name,
                "bare_img_s": bare["img_s"],
                "stream_img_s": stream["img_s"],
                "b_over_a": stream["img_s"] / bare["img_s"],
                "b_over_a_cpu": stream["img_per_cpu_s"] / bare["img_per_cpu_s"],
                "vs_baseline_stream": stream["img_s"] / base["img_s"],
                "vs_baseline_stream_cpu": stream["img_per_cpu_s"] / base["img_per_cpu_s"],
                "size_vs_raw": stream["size_vs_raw"],
            }
        )
        print(f"  lever {name}: {results[-1]}", file=sys.stderr)
    return results


# --- (d), (e): the whole stage ----------------------------------------------------------------


def run_stage(config, data: Path, run_dir: Path) -> dict:
    from inception_retrain.data.ingest import ingest
    from inception_retrain.features.extraction import extract_features

    manifest = ingest(config.ingest, run_dir)
    started = time.perf_counter()
    extract_features(manifest, config.extraction, run_dir)
    wall = time.perf_counter() - started
    report = json.loads((run_dir / "extract.json").read_text())
    return {"wall_s": wall, **report}


def measure_stage(root: Path, data: Path, n: int, batch_size: int) -> dict:
    workdir = root / "stage-work"
    config = config_for(data, workdir, batch_size)
    full = run_stage(config, data, root / "run-full")
    unchanged = run_stage(config, data, root / "run-unchanged")
    new = max(1, round(0.05 * n))
    write_jpegs(data, new, seed=0, start=n)
    rerun = run_stage(config, data, root / "run-plus5")
    shutil.rmtree(workdir)
    return {
        "full": _stage_summary(full),
        "unchanged": _stage_summary(unchanged),
        "plus5": _stage_summary(rerun),
        "new_images": new,
    }


def _stage_summary(report: dict) -> dict:
    keys = ("wall_s", "computed", "reused", "compute_seconds", "images_per_s", "bytes_on_disk")
    return {k: report[k] for k in keys} | {
        "bytes_per_image": report["bytes_per_image"],
        "size_vs_raw_float32": report["size_vs_raw_float32"],
    }


# --- (f): peak RSS, each size in a fresh process ----------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak RSS. Not getrusage's ru_maxrss: Linux keeps that across execve, so
    a child would report its (big) parent's peak. VmHWM belongs to this address space only."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def rss_child(args) -> None:
    """Child mode: ingest + extract one folder, print peak RSS as JSON on the last line."""
    data, workdir = Path(args.rss_child[0]), Path(args.rss_child[1])
    config = config_for(data, workdir, args.batch_size)
    report = run_stage(config, data, workdir / "run")
    summary = {"peak_rss_mib": peak_rss_mib(), "computed": report["computed"]}
    print(json.dumps(summary | {"wall_s": report["wall_s"]}))


def measure_rss(root: Path, sizes: list[int], batch_size: int) -> list[dict]:
    results = []
    for size in sizes:
        data = root / f"rss-data-{size}"
        write_jpegs(data, size, seed=1)
        command = [sys.executable, __file__, "--batch-size", str(batch_size), "--rss-child"]
        done = subprocess.run(
            [*command, str(data), str(root / f"rss-work-{size}")],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append({"images": size, **json.loads(done.stdout.strip().splitlines()[-1])})
        shutil.rmtree(data)
        shutil.rmtree(root / f"rss-work-{size}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="dataset size for (a)-(e)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--part-rows", type=int, default=256, help="images per Parquet part")
    parser.add_argument("--repeats", type=int, default=2, help="alternating a/b pairs")
    parser.add_argument("--rss-sizes", default="512,2048", help="two sizes for (f); empty: skip it")
    parser.add_argument("--levers", action="store_true", help="also measure the levers")
    parser.add_argument(
        "--formats", action="store_true", help="also compare part formats (size, CPU per row)"
    )
    parser.add_argument("--lever-images", type=int, default=256)
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp folder)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args)
        return

    from inception_retrain.data.ingest import ingest
    from inception_retrain.data.manifest import read_image_rows as read_ok_rows

    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-extract-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = {"machine": machine(), "images": args.images, "batch_size": args.batch_size}
    results["command"] = "python bench/extract.py " + " ".join(sys.argv[1:])
    data = root / "data"
    write_jpegs(data, args.images)
    manifest = ingest(config_for(data, root / "work", args.batch_size).ingest, root / "run-ingest")
    rows = read_ok_rows(manifest.path)
    print(f"generated and ingested {len(rows)} JPEGs in {root}", file=sys.stderr)

    bench = Bench(rows, root, args.batch_size, args.part_rows)
    results["ab"] = measure_ab(bench, len(rows), args.batch_size, args.repeats)
    if args.formats:
        results["formats"] = measure_formats(bench, min(256, len(rows)), args.batch_size)
    if args.levers:
        results["lever_images"] = min(args.lever_images, len(rows))
        results["levers"] = measure_levers(bench, results["lever_images"], args.batch_size)
    del bench
    results["stage"] = measure_stage(root, data, len(rows), args.batch_size)
    sizes = [int(s) for s in args.rss_sizes.split(",") if s]  # "": skip (f)
    results["rss"] = measure_rss(root, sizes, args.batch_size)
    results["machine"]["load_average_end"] = os.getloadavg()
    results["wall_s"] = time.perf_counter() - started
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if not args.workdir:
        shutil.rmtree(root)
    m = results["machine"]
    print(
        f"\nMachine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, GPU {m['gpu']}; "
        f"TensorFlow {m['tensorflow']}; load average {m['load_average_start'][0]:.1f} at start, "
        f"{m['load_average_end'][0]:.1f} at end; bench wall {results['wall_s']:.0f} s"
    )
    print(table(results))


if __name__ == "__main__":
    main()
