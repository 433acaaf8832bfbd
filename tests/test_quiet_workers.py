"""Quiet everywhere: a flow run started by a deployment's worker filters TensorFlow's C++
noise as the CLI does, with the one filter (`plumbing.stderr_filter`). Dask workers' logs
are checked in tests/test_scale_out.py (the worker plugin `QuietStderr`).

  * A flow module imported in a flow-run process (PREFECT__FLOW_RUN_ID set, as every
    Prefect worker and `serve` set it) installs the filter; imported anywhere else, it
    changes nothing. Checked with the noise TensorFlow itself writes when it loads.
  * Marked `extended` (minutes; `make test-extended`): batch-predict deployed from prefect.yaml
    to a process work pool and run by a real `prefect worker`: the run completes and the
    worker's output holds the run's log lines and no noise.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from prefect_fixtures import REPO, api_client, child_env, tail

NOISE = re.compile(
    r"cuInit|DT_HALF|absl::InitializeLog|oneDNN custom operations|Could not find cuda drivers"
    r"|This TensorFlow binary is optimized"
)
IMPORT_THEN_LOAD_TENSORFLOW = """
import os, sys
import inception_retrain.flows.predict  # what `python -m prefect.engine` does first
import tensorflow as tf
tf.constant(1.0) + 1  # TensorFlow's runtime starts: its C++ noise goes to fd 2
print("a real error line", file=sys.stderr)
"""


def tensorflow_env(**updates: str) -> dict[str, str]:
    """This environment without the quiet settings tests use: what a worker may have."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT__FLOW_RUN_ID"}
    for name in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES"):
        env.pop(name, None)
    return {**env, **updates}


@pytest.mark.parametrize(
    "in_flow_run",
    [True, pytest.param(False, marks=pytest.mark.extended)],  # the control: TensorFlow's noise
    ids=["flow-run", "elsewhere"],
)
def test_a_flow_module_quiets_tensorflow_in_a_flow_run_process_only(in_flow_run):
    env = tensorflow_env(**({"PREFECT__FLOW_RUN_ID": "0" * 32} if in_flow_run else {}))
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_THEN_LOAD_TENSORFLOW],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "a real error line" in done.stderr
    noise = NOISE.findall(done.stderr)
    if in_flow_run:
        assert not noise, done.stderr[-3000:]
    else:  # the control: the same process shows TensorFlow's noise without the filter
        assert noise, done.stderr[-3000:]


@pytest.mark.extended
def test_a_deployment_run_by_a_process_worker_shows_no_tensorflow_noise(
    prefect_server, tiny_run, tiny_version, tmp_path
):
    from prefect.client.schemas.actions import WorkPoolCreate

    pool = "quiet-test"
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    predict = next(d for d in spec["deployments"] if d["name"] == "batch-predict")
    predict |= {"name": "batch-predict-quiet", "work_pool": {"name": pool}}
    copy = tmp_path / "prefect.yaml"
    copy.write_text(yaml.safe_dump({**spec, "deployments": [predict]}))
    env = tensorflow_env(
        **child_env(PREFECT_API_URL=prefect_server.api_url, PREFECT_HOME=str(tmp_path / "home"))
    )
    for name in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES"):
        env.pop(name, None)
    with api_client(prefect_server.api_url) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    deployed = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--prefect-file", str(copy)]
        + ["--name", "batch-predict-quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]

    images = tmp_path / "inbox"
    images.mkdir()
    for i, uri in enumerate(sorted(Path(tiny_run.config.data).rglob("*.png"))[:4]):
        (images / f"{i}.png").write_bytes(uri.read_bytes())
    output = tmp_path / "predictions.csv"
    parameters = {
        "paths": [str(images)],
        "output": str(output),
        "model": tiny_version.version,
        "workdir": str(tiny_run.config.workdir),
    }
    with api_client(prefect_server.api_url) as client:
        deployment = client.read_deployment_by_name("batch-predict/batch-predict-quiet")
        run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.run(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--run-once"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    assert worker.returncode == 0, tail(log, 60)
    with api_client(prefect_server.api_url) as client:
        deadline = time.monotonic() + 120  # the final state may arrive after the worker ends
        while not (state := client.read_flow_run(run.id).state).is_final():
            assert time.monotonic() < deadline, state
            time.sleep(0.5)
    assert state.is_completed(), (state, tail(log, 60))
    assert output.is_file()
    text = log.read_text(errors="replace")
    assert "images, 0 failed" in text  # the flow run's own log lines come through
    assert not NOISE.findall(text), tail(log, 60)
