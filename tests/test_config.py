"""RetrainConfig: the one model behind CLI options and deployment parameters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inception_retrain.cli.options import UsageError, config_from_options
from inception_retrain.config import RetrainConfig
from inception_retrain.training.head_spec import HeadSpec


def test_relative_paths_are_made_absolute_where_the_run_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert RetrainConfig(workdir="work").workdir == tmp_path / "work"
    assert RetrainConfig().workdir == tmp_path / "workdir"  # the default too
    (tmp_path / "photos").mkdir()
    (tmp_path / "w.weights.h5").write_bytes(b"")
    config = RetrainConfig(data="photos", weights="w.weights.h5")
    assert config.data == str(tmp_path / "photos")
    assert config.weights == str(tmp_path / "w.weights.h5")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("weights", "random:seven"),
        ("split_fractions", (0.5, 0.6, 0.1)),
        ("split_fractions", (0.0, 0.5, 0.5)),
        ("image_size", 74),
        ("dropout_rate", 1.0),
        ("sweep_rates", [0.0, 1.0]),
        ("hidden_units", (0, 8)),
        ("data", "/no/such/folder"),
    ],
)
def test_bad_values_are_rejected(field, value):
    values = {"head": {field: value}} if field in HeadSpec.model_fields else {field: value}
    with pytest.raises(ValidationError):
        RetrainConfig(**values)


def test_cli_strings_become_typed_values():
    config = config_from_options(
        {"hidden_units": "16,32", "sweep_rates": "0,0.5", "epochs": "3", "data": None}
    )
    assert config.head.hidden_units == (16, 32) and config.sweep_rates == [0.0, 0.5]
    assert config.head.dropout_rate == HeadSpec().dropout_rate  # the default, stated once
    assert config.epochs == 3 and config.data == "demo"
    with pytest.raises(UsageError, match="--hidden-units: expected 2 comma-separated values"):
        config_from_options({"hidden_units": "16"})
    with pytest.raises(UsageError, match="--dropout-rate: Input should be less than 1"):
        config_from_options({"dropout_rate": "1.0"})


def test_head_spec_rates_follow_the_placement():
    assert HeadSpec().rates == (0.0, 0.2)
    assert HeadSpec(dropout_rate=0.5, dropout_placement="after_both").rates == (0.5, 0.5)
    assert HeadSpec(dropout_placement="none").rates == (0.0, 0.0)
    assert not HeadSpec(dropout_rate=0.0).has_dropout
    assert HeadSpec().describe() == "Dense(512) -> Dense(1024) -> Dropout(0.2)"
