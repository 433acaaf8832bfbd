"""What the benchmarks share: generated JPEG data and a description of the machine."""

from __future__ import annotations

import io
import json
import os
import platform
from pathlib import Path

import numpy as np
from PIL import Image


def write_jpegs(folder: Path, count: int, seed: int = 0, start: int = 0) -> None:
    """Write demo-texture JPEGs `img-<index>.jpg` (300-500 px long side, quality 90) into
    `folder/<class>/`, for indices start..start+count; deterministic per (seed, index)."""
    from inception_retrain.data.demo_data import draw_blobs, draw_stripes

    for index in range(start, start + count):
        rng = np.random.default_rng([seed, index])
        label, draw = (("blobs", draw_blobs), ("stripes", draw_stripes))[index % 2]
        pixels = draw(rng)
        pixels = pixels + rng.normal(0.0, 6.0, pixels.shape)  # sensor-like noise, as the demo
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
        scale = int(rng.integers(300, 501)) / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        path = folder / label / f"img-{index:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buffer.getvalue())


def machine() -> dict:
    import tensorflow as tf

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "gpu": [g.name for g in tf.config.list_physical_devices("GPU")] or "none",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "load_average_start": os.getloadavg(),
    }


def finish(results: dict, out: Path | None) -> None:
    """Record the load average at the end, print the machine line, write `out` as JSON."""
    results["machine"]["load_average_end"] = os.getloadavg()
    host = results["machine"]
    load = f"{host['load_average_start'][0]:.1f} -> {host['load_average_end'][0]:.1f}"
    print(f"machine: {host['cpu']}, {host['cores']} cores, load average {load}")
    if out:
        out.write_text(json.dumps(results, indent=2) + "\n")
