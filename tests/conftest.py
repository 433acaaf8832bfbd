"""Test isolation: Prefect and Keras state live in a temporary folder, analytics off.

These variables must be set before prefect is imported anywhere, hence module level.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="inception-retrain-tests-"))
os.environ["PREFECT_HOME"] = str(_HOME / "prefect")
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(_HOME / "prefect" / "storage")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.pop("PREFECT_API_URL", None)
os.environ["KERAS_HOME"] = str(_HOME / "keras")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("session")


@pytest.fixture(scope="session")
def small_demo_dir(session_tmp) -> Path:
    """A small deterministic demo folder (real JPEG/PNG files plus broken ones)."""
    from tasks.demo_data import write_demo_data

    directory = session_tmp / "demo"
    write_demo_data(directory, per_class=24, seed=1)
    return directory


@pytest.fixture(scope="session")
def random_weights_file(session_tmp) -> Path:
    """A randomly initialised InceptionV3 (150x150, no top) saved as a weights file."""
    from tasks.backbone import save_random_weights

    return save_random_weights(session_tmp / "random.weights.h5", image_size=150, seed=7)
