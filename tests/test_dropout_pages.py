"""What the dropout report's pages show, without a run: people's names for the program's
names (dropout/wording.py, dropout/layer_table.py) and a gradient chart that draws 0 as 0."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from inception_retrain.dropout import layer_table, plots
from inception_retrain.dropout.backward import VariableGradient
from inception_retrain.dropout.forward import LayerChange
from inception_retrain.dropout.measurements import RunContext
from inception_retrain.dropout.wording import readable, words


def _measurements():
    """The parts of `Measurements` the names and the gradient chart read: a head with
    Dropout(0.2) after Dense(1024); with rate 1, every gradient before it is exactly 0."""
    context = SimpleNamespace(hidden_units=[512, 1024])
    context.dense = lambda name: RunContext.dense(context, name)  # the real naming rule
    layers = [
        LayerChange("flatten", "head", [8], 0.0, 0.0, False),
        LayerChange("hidden_1", "head", [512], 0.0, 0.0, False),
        LayerChange("hidden_2", "head", [1024], 0.0, 0.0, False),
        LayerChange("dropout", "head", [1024], 2.0, 0.5, True),
        LayerChange("predictions", "head", [1], 0.01, 1.0, True),
    ]
    dropout = SimpleNamespace(layer="dropout", rate=0.2)
    variables = [
        VariableGradient(f"{layer}/{part}", layer, layer != "predictions", 1.2, 1.0, 0.3, 0.0, 1.0)
        for layer in ("hidden_1", "hidden_2")
        for part in ("kernel", "bias")
    ]
    variables += [
        VariableGradient("predictions/kernel", "predictions", False, 1.1, 1.0, 0.2, 0.5, 0.5),
        VariableGradient("predictions/bias", "predictions", False, 1.1, 1.0, 0.2, 100.0, 99.0),
    ]
    forward = SimpleNamespace(head_layers=layers, dropouts=[dropout])
    return SimpleNamespace(
        context=context, forward=forward, backward=SimpleNamespace(variables=variables)
    )


def test_layers_and_keys_read_as_people_name_them():
    names = layer_table.names(_measurements())
    assert [names[n] for n in ("flatten", "hidden_1", "hidden_2", "dropout", "predictions")] == [
        "Flatten",
        "Dense(512)",
        "Dense(1024)",
        "Dropout(0.2)",
        "Dense(1)",
    ]
    text = readable("hidden_2/kernel of hidden_2; noise_shape (after_dense2)", names)
    assert text == "Dense(1024) kernel of Dense(1024); noise shape (after the last hidden layer)"
    # English words that are also layer names change only as a whole cell
    assert readable("MC dropout predictions", names) == "MC dropout predictions"
    assert readable("predictions", names) == "Dense(1)"
    assert readable("see dropout_impact.html", names) == "see dropout_impact.html"  # a file
    assert readable(0.5, names) == 0.5
    assert words("backbone_trainable_layers") == "backbone trainable layers"
    assert words("log_loss") == "log loss"


def test_the_gradient_chart_draws_zero_as_zero_and_labels_a_cut_bar():
    figure = plots.gradient_changes(_measurements())
    _, rate_1 = figure.axes
    heights = [bar.get_height() for bar in rate_1.patches]
    assert heights[:4] == [0.0, 0.0, 0.0, 0.0]  # no gradient: no bar, not a full one
    assert heights[4] == pytest.approx(50.0)
    top = rate_1.get_ylim()[1]
    assert heights[5] < top and heights[5] < 10_000  # 10,000% is cut to fit
    labels = [text.get_text() for text in rate_1.texts]
    assert labels[:4] == ["0: none"] * 4 and labels[5] == "10000% (bar cut)"
    ticks = [tick.get_text() for tick in rate_1.get_xticklabels()]
    assert ticks[0] == "Dense(512) kernel" and ticks[-1] == "Dense(1) bias"
