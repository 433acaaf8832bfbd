"""RetrainConfig: the one model behind CLI options and deployment parameters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inception_retrain.cli import UsageError, config_from_options
from inception_retrain.config import RetrainConfig


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
    with pytest.raises(ValidationError):
        RetrainConfig(**{field: value})


def test_cli_strings_become_typed_values():
    config = config_from_options(
        {"hidden_units": "16,32", "sweep_rates": "0,0.5", "epochs": "3", "data": None}
    )
    assert config.hidden_units == (16, 32) and config.sweep_rates == [0.0, 0.5]
    assert config.epochs == 3 and config.data == "demo"
    with pytest.raises(UsageError, match="--hidden-units: expected 2 comma-separated values"):
        config_from_options({"hidden_units": "16"})
