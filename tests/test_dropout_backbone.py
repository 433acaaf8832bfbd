"""C6 inside the backbone (dropout/backbone_reach.py): with mixed7 unfrozen, the head's Dropout
changes every trainable block layer's gradient while every frozen variable stays bit-identical;
with the block frozen the same measurement finds no change anywhere in the backbone.

Real pieces at 75 px: one random-weight InceptionV3, its mixed7 block copied trainable and
frozen, a small seeded head with Dropout(0.5), eight real demo images.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from inception_retrain.dropout.claims import CLARIFIED, REFUTED, SUPPORTED

SIZE = 75
WEIGHTS = "random:0"


@pytest.fixture(scope="module")
def pieces(small_demo_dir):
    import keras

    from inception_retrain.data.image_files import find_files
    from inception_retrain.dropout.chain import measurement_layers
    from inception_retrain.features.backbone import load_inception
    from inception_retrain.features.preprocess import image_dataset
    from inception_retrain.training.head import build_head
    from inception_retrain.training.head_spec import HeadSpec

    folders = sorted(p for p in small_demo_dir.iterdir() if p.is_dir())
    uris, labels = [], []
    for label, folder in enumerate(folders):
        found = [str(f) for f in find_files([folder]).files if f.suffix == ".jpg"][:4]
        uris += found
        labels += [label] * len(found)
    images = np.concatenate([np.asarray(b) for b in image_dataset(uris, SIZE, len(uris))])
    full = load_inception(WEIGHTS, SIZE)
    prefix = np.asarray(keras.Model(full.input, full.get_layer("mixed6").output)(images))
    head = build_head(tuple(full.get_layer("mixed7").output.shape[1:]), 2, HeadSpec(), seed=4)
    layers, _ = measurement_layers(head)
    return SimpleNamespace(
        full=full, images=images, labels=np.array(labels), prefix=prefix, head=head, layers=layers
    )


def _reach_and_steps(pieces, trainable: bool):
    import keras

    from inception_retrain.dropout.backbone_reach import measure_backbone_reach
    from inception_retrain.dropout.chain import copy_head
    from inception_retrain.dropout.frozen import measure_frozen
    from inception_retrain.features.backbone_block import backbone_with_block, block_model

    block = block_model(pieces.full, "mixed6", "mixed7", trainable=trainable)
    reach = measure_backbone_reach(
        pieces.prefix,
        block,
        pieces.layers,
        pieces.labels,
        2,
        model="fine-tuned" if trainable else "frozen backbone",
        blocks=["mixed7"],
    )
    steps = measure_frozen(
        backbone_with_block(WEIGHTS, "mixed7", SIZE, block, trainable=trainable),
        copy_head(pieces.head),
        pieces.images,
        pieces.labels,
        2,
        batch_size=4,
        optimizer=keras.optimizers.SGD(learning_rate=1e-2, momentum=0.9),
    )
    return reach, steps


def test_unfrozen_block_every_trainable_layer_gets_another_gradient_and_frozen_bytes_stay(
    pieces,
):
    from inception_retrain.dropout.mechanisms import judge_c6_backbone
    from inception_retrain.dropout.prose import _backbone_gradients

    reach, steps = _reach_and_steps(pieces, trainable=True)
    assert reach.trainable == reach.changed == 10
    assert [row.layer for row in reach.layers] == [f"mixed7_conv2d_{k}" for k in range(10)]
    assert all(row.relative_change > 0 and row.norm_without_dropout > 0 for row in reach.layers)
    assert len(reach.frozen_layers) == 10  # the BatchNormalization layers
    # F3 on the same model: the fit steps trained the block, and nothing frozen moved.
    assert steps.backbone_trainable_variables == steps.backbone_trainable_variables_changed == 10
    assert steps.backbone_variables_changed == 0 and steps.batchnorm_moving_statistics_changed == 0
    assert steps.backbone_frozen_variables == steps.backbone_variables - 10

    finding = judge_c6_backbone(reach, steps)
    assert finding.verdict == SUPPORTED
    assert finding.numbers["backbone_layers_with_changed_gradient"] == 10
    bullet = _backbone_gradients(SimpleNamespace(backbone_reach=reach, frozen=steps))
    assert bullet.answer.startswith("Yes, through backpropagation")
    assert "10 of the 10 trainable layers of mixed7" in bullet.answer
    assert f"all {steps.backbone_frozen_variables} frozen backbone variables" in bullet.answer


def test_frozen_block_the_finding_flips_to_no_change_in_the_backbone(pieces):
    from inception_retrain.dropout.mechanisms import judge_c6_backbone
    from inception_retrain.dropout.prose import _backbone_gradients

    reach, steps = _reach_and_steps(pieces, trainable=False)
    assert reach.trainable == reach.changed == 0 and reach.layers == []
    assert reach.min_relative_change is None
    assert steps.backbone_trainable_variables == steps.backbone_trainable_variables_changed == 0
    assert steps.backbone_variables_changed == 0  # nothing in the backbone moved at all

    finding = judge_c6_backbone(reach, steps)
    assert finding.verdict == CLARIFIED
    assert finding.numbers["backbone_trainable_layers"] == 0
    assert "no backbone layer has a gradient for Dropout to change" in finding.reason
    bullet = _backbone_gradients(SimpleNamespace(backbone_reach=reach, frozen=steps))
    assert bullet.answer.startswith("Not here") and "0 trainable layers" in bullet.answer


def test_a_trainable_layer_dropout_leaves_alone_or_a_frozen_byte_that_moves_refutes_it():
    """The rule itself: supported only if every trainable layer changed and nothing frozen."""
    from inception_retrain.dropout.backbone_reach import BackboneReach, LayerGradient
    from inception_retrain.dropout.mechanisms import judge_c6_backbone

    def reach(changes):
        rows = [LayerGradient(f"l{i}", "Conv2D", 9, 1.0, 1.0, c) for i, c in enumerate(changes)]
        return BackboneReach("fine-tuned", ["mixed7"], 8, rows)

    steps = SimpleNamespace(
        backbone_frozen_variables=270, backbone_variables_changed=0, fit_steps=2
    )
    assert judge_c6_backbone(reach([0.1, 0.2]), steps).verdict == SUPPORTED
    assert judge_c6_backbone(reach([0.1, 0.0]), steps).verdict == REFUTED
    moved = SimpleNamespace(**{**vars(steps), "backbone_variables_changed": 1})
    assert judge_c6_backbone(reach([0.1, 0.2]), moved).verdict == REFUTED
