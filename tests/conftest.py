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
# Prefect gives its temporary (ephemeral) server 20 s to start; on 2 busy cores it needs more
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
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
    from inception_retrain.data.demo_data import write_demo_data

    directory = session_tmp / "demo"
    write_demo_data(directory, per_class=24, seed=1)
    return directory


@pytest.fixture(scope="session")
def random_weights_file(session_tmp) -> Path:
    """A randomly initialised InceptionV3 (150x150, no top) saved as a weights file."""
    from inception_retrain.features.backbone import save_random_weights

    return save_random_weights(session_tmp / "random.weights.h5", image_size=150, seed=7)


@pytest.fixture(scope="session")
def tiny_run(session_tmp, small_demo_dir):
    """The real stages ingest -> extract -> train -> evaluate on `small_demo_dir` (random
    weights, 75 px, float32 features, a 16-16 head; ~20 test images).

    Random-weight mixed7 features are ~1e-3, so a briefly trained head predicts ~0.5 for
    everything; its first kernel is then scaled up (by the factor that spreads the
    probabilities most) so that comparisons of probabilities are sensitive. That needs the
    raw features (`standardize_features=False`): the standardised head is tested in
    tests/test_standardize.py and by every full run.
    """
    from types import SimpleNamespace

    import keras
    import numpy as np

    from inception_retrain.config import RetrainConfig
    from inception_retrain.data.ingest import ingest
    from inception_retrain.evaluation.evaluate import evaluate
    from inception_retrain.features.extraction import extract_features
    from inception_retrain.runs.run_folder import new_run_dir
    from inception_retrain.training.head import head_fingerprint
    from inception_retrain.training.head_spec import HeadSpec
    from inception_retrain.training.train import train_head
    from inception_retrain.training.training_data import load_split

    config = RetrainConfig(
        data=str(small_demo_dir),
        workdir=session_tmp / "pipeline-work",
        weights="random:0",
        image_size=75,
        feature_dtype="float32",
        split_fractions=(0.5, 0.2, 0.3),
        head=HeadSpec(hidden_units=(16, 16), learning_rate=1e-3),
        epochs=3,
        batch_size=8,
        patience=0,
        standardize_features=False,
    )
    run_dir = new_run_dir(config.workdir)
    manifest = ingest(config.ingest, run_dir)
    cache = extract_features(manifest, config.extraction, run_dir)
    head = train_head(manifest, cache, config.training, run_dir)
    model = keras.saving.load_model(head.head_path)
    kernel, bias = model.get_layer("hidden_1").get_weights()
    _, features, _ = load_split(cache.cache_dir, manifest.path, None)
    spreads = {}
    for factor in (10.0, 100.0, 1000.0, 10000.0):
        model.get_layer("hidden_1").set_weights([kernel * factor, bias])
        spreads[factor] = float(np.std(model.predict(features, verbose=0)))
    model.get_layer("hidden_1").set_weights([kernel * max(spreads, key=spreads.get), bias])
    model.save(head.head_path)
    head = head.model_copy(update={"fingerprint": head_fingerprint(model)})
    evaluation = evaluate(manifest, cache, head, run_dir)
    return SimpleNamespace(
        config=config,
        run_dir=run_dir,
        manifest=manifest,
        cache=cache,
        head=head,
        evaluation=evaluation,
    )


@pytest.fixture(scope="session")
def tiny_version(tiny_run):
    """`tiny_run`'s model exported to WORKDIR/models/<version>/ (not promoted)."""
    from inception_retrain.registry.export import export_model

    r = tiny_run
    return export_model(r.manifest, r.cache, r.head, r.evaluation, r.config.promotion, r.run_dir)


# One real Prefect server, one `inception-retrain serve` and one set of runs, shared by
# test_prefect_server.py and test_browser.py (defined once here, so started once).
from prefect_fixtures import prefect_server, served, server_runs  # noqa: E402,F401


def pytest_sessionfinish(session, exitstatus):
    """Prefect stops its temporary server at interpreter exit and logs it to a stream pytest
    has already closed; don't print that harmless "--- Logging error ---" noise."""
    import logging

    logging.raiseExceptions = False
