"""The dropout report of a run: answer "which layers does Dropout affect?" for its model.

Every number is computed here, on the run's trained head (`head.keras`, with the `HeadSpec`
and seed it was trained with), the frozen backbone that made the cached features
(`cache.backbone`), and the run's own data. When the run's model is fine-tuned (`head` is a
`FineTunedModel` and `cache` the prefix cache it trained on), its fine-tuned block is part of
the backbone everywhere: the head's features are the block's outputs on the cached prefix,
the full model carries the block's weights, and F3 trains the block as fine-tuning did and
checks only the variables that really were frozen. C6's backbone finding
(`backbone_reach`) measures the fine-tuned block (`fine_tuned`, chosen or not) or, without
fine-tuning, the frozen top block: a few real
training images (decoded and preprocessed as in extraction) for the full-model measurements,
and the cached features for everything that only needs the head. The measurements live in
the modules beside this one (collected in a `measurements.Measurements`), the verdict rules
in `verdicts.py`. The sweep (F5) is an input: its trainings run before, one Prefect task run
each (`flows.sweep`), and arrive here as the `SweepSummary` of `sweep.summarize`.

    json_path = dropout_report(manifest, cache, head, sweep_summary, run_dir,
                               evidence=EvidenceSpec(), mc_passes=30)
    # run_dir/dropout_impact.{json,md,html} and run_dir/dropout_*.png
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from inception_retrain.data.manifest import SPLITS, Manifest, read_image_rows
from inception_retrain.dropout.evidence_spec import EvidenceSpec
from inception_retrain.dropout.measurements import Measurements, RunContext
from inception_retrain.dropout.sweep_summary import SweepSummary
from inception_retrain.features import feature_cache
from inception_retrain.features.feature_cache import FeatureCache
from inception_retrain.plumbing.errors import DataError, PipelineError
from inception_retrain.training.fine_tune import FineTunedModel
from inception_retrain.training.head import TrainedHead

NOT_CHOSEN = "fine-tuned, not chosen"  # C6's backbone finding on a model validation passed over
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


def _image_uris(manifest_path: Path, content_ids: list[str]) -> list[str]:
    rows = read_image_rows(manifest_path)
    uris = dict(zip(rows.content_ids, rows.uris, strict=True))
    return [uris[cid] for cid in content_ids]


def _load_images(uris: list[str], image_size: int) -> np.ndarray:
    from inception_retrain.features.preprocess import image_dataset

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
    sweep: SweepSummary,
    run_dir: Path,
    *,
    evidence: EvidenceSpec,
    mc_passes: int,
    fine_tuned: FineTunedModel | None = None,
) -> Path:
    """Measure, judge and write dropout_impact.{json,md,html}; returns the JSON's path.
    `fine_tuned`: the run's fine-tuned model when the head alone was chosen (C6's backbone
    finding measures its block)."""
    with feature_cache.reading(cache.cache_dir):
        return _measure_and_report(
            manifest, cache, head, sweep, run_dir, evidence, mc_passes, fine_tuned
        )


def _split_through(block, splits: dict) -> dict:
    """Each split's prefix features as the block's outputs (the fine-tuned head's inputs)."""
    shape = tuple(int(d) for d in block.output.shape[1:])
    mapped = {}
    for name, (ids, x, y) in splits.items():
        out = block.predict(x, batch_size=64, verbose=0) if len(x) else np.zeros((0, *shape))
        mapped[name] = (ids, np.asarray(out, np.float32), y)
    return mapped


def _models(head, backbone_spec):
    """(backbone, trained head, block or None, the head's input layer, unfrozen backbone
    layers) of the run's model: a fine-tuned model's backbone carries its block, trainable
    as it was trained."""
    import keras

    from inception_retrain.features.backbone import load_backbone
    from inception_retrain.features.backbone_block import backbone_with_block, unfrozen_layers
    from inception_retrain.training.fine_tune import split_fine_tuned

    loaded = keras.saving.load_model(head.head_path, compile=False)
    if not isinstance(head, FineTunedModel):
        backbone = load_backbone(
            backbone_spec.weights, backbone_spec.layer, backbone_spec.image_size
        )
        return backbone, loaded, None, backbone_spec.layer, ()
    block, trained = split_fine_tuned(loaded)
    layer = head.fine_tuning.layer
    backbone = backbone_with_block(
        backbone_spec.weights, layer, backbone_spec.image_size, block, trainable=True
    )
    return backbone, trained, block, layer, tuple(unfrozen_layers(backbone, block))


def _measure_reach(
    backbone, backbone_spec, block, layers, images, labels, n_classes, head, fine_tuned, steps
):
    """C6 in the backbone, on the fine-tuned block (the run's model's, else `fine_tuned`'s)
    or the frozen top block; None when the backbone is cut at mixed0 (no block below).
    `steps`: F3 on the run's model; a fine-tuned model that was not chosen gets its own."""
    import keras

    from inception_retrain.dropout.backbone_reach import measure_backbone_reach
    from inception_retrain.dropout.chain import copy_head, measurement_layers
    from inception_retrain.dropout.frozen import measure_frozen
    from inception_retrain.features.backbone_block import (
        backbone_with_block,
        block_model,
        prefix_model,
    )
    from inception_retrain.features.backbone_spec import BACKBONE_LAYERS, prefix_layer
    from inception_retrain.training.fine_tune import split_fine_tuned

    tuned = head if isinstance(head, FineTunedModel) else fine_tuned
    layer = backbone.layers[-1].name  # the cut: a flat backbone ends at its block output
    if tuned is None:
        if layer == BACKBONE_LAYERS[0]:
            return None
        prefix, blocks, model = prefix_layer(layer), [layer], "frozen backbone"
        block = block_model(backbone, prefix, layer, trainable=False)
    else:
        prefix, blocks = tuned.fine_tuning.prefix, list(tuned.fine_tuning.blocks)
        model = "fine-tuned"
        if tuned is not head:
            model = NOT_CHOSEN
            block, other_head = split_fine_tuned(
                keras.saving.load_model(tuned.head_path, compile=False)
            )
            layers, _ = measurement_layers(
                other_head, tuned.training.head.dropout_rate, seed=tuned.training.seed
            )
            spec = tuned.fine_tuning
            steps = measure_frozen(
                backbone_with_block(
                    backbone_spec.weights,
                    spec.layer,
                    backbone_spec.image_size,
                    block,
                    trainable=True,
                ),
                copy_head(other_head),
                images,
                labels,
                n_classes,
                batch_size=FROZEN_BATCH,
                optimizer=spec.make_optimizer(),
            )
    features = np.asarray(prefix_model(backbone, prefix)(images, training=False))
    return measure_backbone_reach(
        features, block, layers, labels, n_classes, model=model, blocks=blocks, steps=steps
    )


def _measure_and_report(
    manifest, cache, head, sweep, run_dir, evidence, mc_passes, fine_tuned=None
) -> Path:
    import keras

    from inception_retrain.dropout import (
        backward,
        direct,
        forward,
        frozen,
        inference,
        plots,
        report,
    )
    from inception_retrain.dropout.chain import copy_head, measurement_layers
    from inception_retrain.dropout.verdicts import judge
    from inception_retrain.features.backbone_block import backbone_with_block, prefix_model
    from inception_retrain.features.feature_parts import read_metadata
    from inception_retrain.training.training_data import load_split

    run_dir = Path(run_dir)
    backbone_spec, training = cache.backbone, head.training
    n_classes = len(manifest.class_names)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with _timed(timings, "load"):
        splits = {s: load_split(cache.cache_dir, manifest.path, s) for s in SPLITS}
        train_ids, train_x, train_y = splits["train"]
        if not train_ids:
            raise DataError(
                f"no cached training features in {cache.cache_dir}: run extraction first"
            )
        if not Path(head.head_path).is_file():
            raise ReportInputError(f"trained head not found: {head.head_path}")
        backbone, trained, block, layer, unfrozen = _models(head, backbone_spec)
        if block is not None:
            splits = _split_through(block, splits)
            train_ids, train_x, train_y = splits["train"]
        layers, inserted = measurement_layers(
            trained, training.head.dropout_rate, seed=training.seed
        )
        image_ids = train_ids[:FORWARD_IMAGES]
        images = _load_images(_image_uris(manifest.path, image_ids), backbone_spec.image_size)
        mc_split = next((s for s in ("test", "validation", "train") if splits[s][0]), "train")
        metadata = read_metadata(cache.cache_dir)
    placement = "after_dense2" if inserted else training.head.dropout_placement
    context = RunContext(
        run_dir=str(run_dir),
        weights=backbone_spec.weights,
        weights_description=backbone_spec.weights_source.description,
        random_weights=backbone_spec.weights_source.is_random,
        layer=layer,
        image_size=backbone_spec.image_size,
        hidden_units=list(training.head.hidden_units),
        rate=training.head.dropout_rate,
        placement=training.head.dropout_placement,
        placement_text=PLACEMENT_TEXT[placement].format(units=training.head.hidden_units[1]),
        inserted=inserted,
        n_classes=n_classes,
        class_names=list(manifest.class_names),
        split_sizes={s: len(splits[s][0]) for s in splits},
        mc_split=mc_split,
        backbone_dropout_layers=sum(
            isinstance(layer, keras.layers.Dropout) for layer in backbone.layers
        ),
        equivalence_margin=evidence.accuracy_margin,
        evidence=evidence,
        fine_tuned=", ".join(head.fine_tuning.blocks) if block is not None else "",
    )
    with _timed(timings, "F1_forward"):
        cached = train_x[: len(images)] if block is None else None  # a block's: not cached
        forward_result = forward.measure_forward(backbone, layers, images, cached)
    with _timed(timings, "F1_fit_masks"):
        fit_masks = forward.measure_fit_masks(
            layers,
            train_x,
            train_y,
            n_classes,
            training.batch_size,
            training.head.learning_rate,
            max_rows=MASK_ROWS,
            seed=training.seed,
        )
    with _timed(timings, "F2_backward"):
        rows = min(training.batch_size, len(train_y))
        backward_result = backward.measure_backward(
            layers, train_x[:rows], train_y[:rows], n_classes, backbone, PER_SAMPLE_STEPS, unfrozen
        )
    with _timed(timings, "F3_frozen"):
        trained_backbone, optimizer, cut = backbone, None, backbone
        if block is not None:  # train a copy, block as fine-tuned: `backbone` stays as it is
            trained_backbone = backbone_with_block(
                backbone_spec.weights, layer, backbone_spec.image_size, block, trainable=True
            )
            optimizer = head.fine_tuning.make_optimizer()
            cut = prefix_model(backbone, backbone_spec.layer)  # what made the cache
        frozen_result = frozen.measure_frozen(
            trained_backbone,
            copy_head(trained),
            images,
            train_y[: len(images)],
            n_classes,
            training.head.learning_rate,
            batch_size=FROZEN_BATCH,
            optimizer=optimizer,
        )
        del trained_backbone
        cache_facts = frozen.cache_training_facts(
            trained,
            train_x.shape[1:],
            cut,
            {"weights_sha256": _find(metadata, "weights_sha256")},
        )
    with _timed(timings, "C6_backbone"):
        reach = _measure_reach(
            backbone,
            backbone_spec,
            block,
            layers,
            images,
            train_y[: len(images)],
            n_classes,
            head,
            fine_tuned,
            frozen_result,
        )
    with _timed(timings, "F4_inference"):
        ids, mc_x, mc_y = splits[mc_split]
        inference_result = inference.measure_inference(
            layers, mc_x, mc_y, n_classes, mc_passes, content_ids=ids, seed=training.seed
        )
    with _timed(timings, "C2_C7_direct"):
        rate = forward_result.main.rate
        z = direct.pre_activations(layers, train_x[:C2_ROWS])
        activation_order = direct.measure_activation_order(z, rate, seed=training.seed)
        noise_shapes = direct.measure_noise_shapes(seed=training.seed)
    del backbone, trained, layers, block
    m = Measurements(
        context=context,
        forward=forward_result,
        fit_masks=fit_masks,
        backward=backward_result,
        frozen=frozen_result,
        cache_facts=cache_facts,
        inference=inference_result,
        activation_order=activation_order,
        noise_shapes=noise_shapes,
        sweep=sweep,
        backbone_reach=reach,
    )
    entries = judge(m, evidence)
    with _timed(timings, "plots"):
        figures = plots.save_all(run_dir, m, entries)
    # every stage of the report: its own measurements and the sweep before them (its wall
    # time in this run; trainings reused from the sweep cache cost nothing here)
    timings["F5_sweep"] = round(float(sweep.wall_seconds or 0.0), 3)
    timings["total"] = round(time.perf_counter() - started + timings["F5_sweep"], 3)
    timings["sweep_trainings_own_seconds"] = round(float(sweep.seconds_total), 3)
    return report.write_reports(run_dir, m, entries, figures, timings)
