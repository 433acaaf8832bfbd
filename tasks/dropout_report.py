"""The dropout-report stage: answer "which layers does Dropout affect?" for this run's model.

Every number is computed here, on the run's trained head (`head.keras`), the frozen backbone
loaded with the run's weights, layer and image size, and the run's own data: a few real
training images (decoded and preprocessed as in extraction) for the full-model measurements,
and the cached features for everything that only needs the head. The measurements live in
`tasks/dropout/`, the verdict rules in `tasks/dropout/verdicts.py`; the sweep (F5) runs as the
Prefect flow `flows.sweep.dropout_sweep` (one task run per training it computes), whose
results are cached under `config.workdir`/sweeps: a rerun on unchanged data trains no sweep head.

    json_path = dropout_report(manifest, cache, head, config, run_dir)
    # run_dir/dropout_impact.{json,md,html} and run_dir/dropout_*.png

`artifacts_for_run(run_dir)` rebuilds the stage inputs of a finished run from its files, for
`inception-retrain dropout-report --run RUN_DIR`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.artifacts import FeatureCache, Manifest, TrainedHead
from inception_retrain.config import RetrainConfig
from inception_retrain.errors import DataError, PipelineError
from inception_retrain.files import read_json, sha256_file
from tasks import cache_locks
from tasks.feature_cache import METADATA_KEY

FORWARD_IMAGES = 8  # real images through the full model (F1) and its fit steps (F3)
FROZEN_BATCH = 4  # batch size of F3's fit steps: 2 real steps on FORWARD_IMAGES images
PER_SAMPLE_STEPS = 8  # one-sample gradient steps of F2
MASK_ROWS = 256  # cached training rows in F1's fit epoch (mask statistics)
C2_ROWS = 64  # rows of real Dense(1024) pre-activations for C2
PLACEMENT_TEXT = {
    "after_dense2": "after Dense({units}) (hidden_2), as in the seed",
    "after_both": "after each of the two Dense layers",
    "none": "nowhere",
}


class ReportInputError(PipelineError):
    """The run folder lacks what the dropout report needs."""


@contextmanager
def _timed(timings: dict, name: str):
    started = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - started, 3)


def _image_rows(manifest_path: Path, content_ids: list[str]) -> list[str]:
    table = pq.read_table(manifest_path, columns=["content_id", "uri", "status"])
    uris = {
        cid: uri
        for cid, uri, status in zip(
            *(table.column(c).to_pylist() for c in ("content_id", "uri", "status")), strict=True
        )
        if status == "ok"
    }
    return [uris[cid] for cid in content_ids]


def _load_images(uris: list[str], image_size: int) -> np.ndarray:
    from tasks.preprocess import image_dataset

    batches = [np.asarray(b) for b in image_dataset(uris, image_size, batch_size=len(uris))]
    return np.concatenate(batches)


def _find(mapping: dict, key: str):
    """A key anywhere in nested dicts (cache metadata nests the fingerprint inputs)."""
    if key in mapping:
        return mapping[key]
    for value in mapping.values():
        if isinstance(value, dict) and (found := _find(value, key)) is not None:
            return found
    return None


def dropout_report(
    manifest: Manifest,
    cache: FeatureCache,
    head: TrainedHead,
    config: RetrainConfig,
    run_dir: Path,
    sweep_workers: int = 1,
) -> Path:
    """Measure, judge and write dropout_impact.{json,md,html}; returns the JSON's path."""
    with cache_locks.reading(cache.cache_dir):  # the sweep's trainings read it too
        return _measure_and_report(manifest, cache, head, config, run_dir, sweep_workers)


def _measure_and_report(manifest, cache, head, config, run_dir, sweep_workers) -> Path:
    import keras

    from flows.sweep import run_sweep
    from tasks.backbone import load_backbone
    from tasks.dropout import backward, direct, forward, frozen, inference, plots, report
    from tasks.dropout import sweep as sweep_lib
    from tasks.dropout.chain import copy_head, measurement_layers
    from tasks.dropout.verdicts import judge
    from tasks.feature_cache import load_split, read_metadata

    run_dir = Path(run_dir)
    n_classes = len(manifest.class_names)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with _timed(timings, "load"):
        splits = {
            s: load_split(cache.cache_dir, manifest.path, s)
            for s in ("train", "validation", "test")
        }
        train_ids, train_x, train_y = splits["train"]
        if not train_ids:
            raise DataError(
                f"no cached training features in {cache.cache_dir}: run extraction first"
            )
        if not Path(head.head_path).is_file():
            raise ReportInputError(f"trained head not found: {head.head_path}")
        trained = keras.saving.load_model(head.head_path, compile=False)
        backbone = load_backbone(config.weights, config.layer, config.image_size)
        layers, inserted = measurement_layers(trained, config.dropout_rate, seed=config.seed)
        image_ids = train_ids[:FORWARD_IMAGES]
        images = _load_images(_image_rows(manifest.path, image_ids), config.image_size)
        mc_split = next((s for s in ("test", "validation", "train") if splits[s][0]), "train")
        metadata = read_metadata(cache.cache_dir)
    placement = "after_dense2" if inserted else config.dropout_placement
    context = {
        "run_dir": str(run_dir),
        "weights": config.weights,
        "layer": config.layer,
        "image_size": config.image_size,
        "hidden_units": list(config.hidden_units),
        "rate": config.dropout_rate,
        "placement": config.dropout_placement,
        "placement_text": PLACEMENT_TEXT[placement].format(units=config.hidden_units[1]),
        "inserted": inserted,
        "n_classes": n_classes,
        "class_names": list(manifest.class_names),
        "split_sizes": {s: len(splits[s][0]) for s in splits},
        "mc_split": mc_split,
        "backbone_dropout_layers": sum(
            isinstance(layer, keras.layers.Dropout) for layer in backbone.layers
        ),
    }
    m: dict = {"context": context}
    with _timed(timings, "F1_forward"):
        m["forward"] = forward.measure_forward(backbone, layers, images, train_x[: len(images)])
    with _timed(timings, "F1_fit_masks"):
        m["fit_masks"] = forward.measure_fit_masks(
            layers, train_x, train_y, n_classes, config.batch_size, config.learning_rate,
            max_rows=MASK_ROWS, seed=config.seed,
        )  # fmt: skip
    with _timed(timings, "F2_backward"):
        rows = min(config.batch_size, len(train_y))
        m["backward"] = backward.measure_backward(
            layers, train_x[:rows], train_y[:rows], n_classes, backbone, PER_SAMPLE_STEPS
        )
    with _timed(timings, "F3_frozen"):
        m["frozen"] = frozen.measure_frozen(
            backbone, copy_head(trained), images, train_y[: len(images)], n_classes,
            config.learning_rate, batch_size=FROZEN_BATCH,
        )  # fmt: skip
        m["cache_facts"] = frozen.cache_training_facts(
            trained,
            cache.feature_shape,
            backbone,
            {"weights_sha256": _find(metadata, "weights_sha256")},
        )
    with _timed(timings, "F4_inference"):
        ids, mc_x, mc_y = splits[mc_split]
        m["inference"] = inference.measure_inference(
            layers, mc_x, mc_y, n_classes, config.mc_passes, content_ids=ids
        )
    with _timed(timings, "C2_C7_direct"):
        rate = m["forward"]["dropouts"][-1]["rate"]
        z = direct.pre_activations(layers, train_x[:C2_ROWS])
        m["activation_order"] = direct.measure_activation_order(z, rate, seed=config.seed)
        m["noise_shapes"] = direct.measure_noise_shapes(seed=config.seed)
    del backbone, trained, layers
    with _timed(timings, "F5_sweep"):
        spec = sweep_lib.SweepSpec.from_run(
            config, cache.cache_dir, manifest.path, n_classes, cache.feature_shape
        )
        m["sweep"] = run_sweep(spec, workers=sweep_workers)
    entries = judge(m)
    with _timed(timings, "plots"):
        figures = plots.save_all(run_dir, m)
    timings["total"] = round(time.perf_counter() - started, 3)
    return report.write_reports(run_dir, m, entries, figures, timings)


dropout_report_task = task(dropout_report, name="dropout-report", cache_policy=NO_CACHE)


# --- rebuilding the inputs of a finished run (CLI) ---------------------------------------


def _manifest_for_run(run_dir: Path) -> Manifest:
    import json

    from tasks.ingest import keys_fingerprint

    path = run_dir / "manifest.parquet"
    if not path.is_file():
        raise ReportInputError(f"{path} not found: is {run_dir} a run folder?")
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[METADATA_KEY])
    columns = (
        table.column(c).to_pylist() for c in ("content_id", "label_index", "split", "status")
    )
    keys = [
        (cid, label, split)
        for cid, label, split, status in zip(*columns, strict=True)
        if status == "ok"
    ]
    counts = read_json(run_dir / "ingest.json") if (run_dir / "ingest.json").is_file() else {}
    return Manifest(
        path=path,
        fingerprint=keys_fingerprint(keys),
        class_names=meta["class_names"],
        counts=counts,
    )


def artifacts_for_run(
    run_dir: Path, **overrides
) -> tuple[Manifest, FeatureCache, TrainedHead, RetrainConfig]:
    """(manifest, cache, head, config) of a finished run; `overrides` change config fields."""
    from pydantic import ValidationError

    run_dir = Path(run_dir)
    needed = ["config.json", "manifest.parquet", "extract.json", "head.keras"]
    missing = [name for name in needed if not (run_dir / name).is_file()]
    if missing:
        raise ReportInputError(f"{run_dir} lacks {', '.join(missing)}: not a finished run folder")
    values = read_json(run_dir / "config.json")
    values.pop("flow_run_id", None)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config = RetrainConfig.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ReportInputError(f"{where}: {first['msg']}") from None
    manifest = _manifest_for_run(run_dir)
    extract = read_json(run_dir / "extract.json")
    cache = FeatureCache(
        cache_dir=Path(extract["cache_dir"]),
        backbone_fingerprint=extract["fingerprint"],
        manifest_fingerprint=extract.get("manifest_fingerprint", manifest.fingerprint),
        feature_shape=tuple(extract["feature_shape"]),
        dtype=extract.get("dtype", config.feature_dtype),
        computed=extract.get("computed", 0),
        reused=extract.get("reused", 0),
        report_path=run_dir / "extract.json",
    )
    if not cache.cache_dir.is_dir():  # a relative workdir: runs/<id>/ sits in WORKDIR/runs/
        beside = run_dir.parent.parent / "cache" / cache.backbone_fingerprint
        cache = cache.model_copy(update={"cache_dir": beside})
        if beside.is_dir():  # the same WORKDIR holds the sweep cache
            config = config.model_copy(update={"workdir": run_dir.parent.parent})
    if not cache.cache_dir.is_dir():
        raise ReportInputError(f"feature cache {cache.cache_dir} not found (pruned?)")
    head_path = run_dir / "head.keras"
    head = TrainedHead(
        head_path=head_path,
        history_path=run_dir / "history.json",
        fingerprint=sha256_file(head_path),
        device="cpu",
    )
    return manifest, cache, head, config
