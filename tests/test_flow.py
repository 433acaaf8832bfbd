"""The retrain flow in-process (embedded Prefect), and its deployment definitions.

The served/deployed behaviour is in test_prefect_server.py; here: prefect.yaml against
flows/deployments.py without a server, the failure paths of `run_retrain` (what the CLI's
`run` uses: a preflight refusal, a stage failure), and the small helpers the flow relies on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def _yaml_deployments() -> dict[str, dict]:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return {d["name"]: d for d in spec["deployments"]}


def test_prefect_yaml_agrees_with_the_served_deployments():
    from prefect.flows import load_flow_from_entrypoint

    from inception_retrain.flows.deployments import (
        NIGHTLY_CRON,
        NIGHTLY_TIMEZONE,
        build_deployments,
    )

    in_yaml = _yaml_deployments()
    served = {d.name: d for d in build_deployments()}
    assert set(served) == set(in_yaml)

    nightly, nightly_yaml = served["nightly-retrain"], in_yaml["nightly-retrain"]
    ((schedule_yaml,),) = [nightly_yaml["schedules"]]
    (schedule,) = nightly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == (NIGHTLY_CRON, NIGHTLY_TIMEZONE)
    assert (schedule_yaml["cron"], schedule_yaml["timezone"]) == (NIGHTLY_CRON, NIGHTLY_TIMEZONE)
    assert nightly.concurrency_limit == nightly_yaml["concurrency_limit"]["limit"] == 1
    assert (
        nightly.concurrency_options.collision_strategy.value
        == nightly_yaml["concurrency_limit"]["collision_strategy"]
        == "ENQUEUE"
    )
    for name, deployment in served.items():
        spec = in_yaml[name]
        assert deployment.parameters == spec.get("parameters", {}), name
        assert deployment.enforce_parameter_schema is spec["enforce_parameter_schema"] is True
        assert sorted(deployment.tags) == sorted(spec["tags"]), name
        assert deployment.description == spec["description"], name
        # Same flow: the served module path (in the installed namespace) and the yaml file
        # path (in the repository) load the same function.
        module, _, function = deployment.entrypoint.rpartition(".")
        path = module.replace(".", "/")  # the module's file: its path is its import path
        assert spec["entrypoint"] == f"{path}.py:{function}"
        loaded = load_flow_from_entrypoint(str(REPO / spec["entrypoint"]))
        assert loaded.name == deployment.flow_name


def test_nightly_parameters_are_a_valid_config_and_overrides_merge():
    from inception_retrain.config import RetrainConfig
    from inception_retrain.flows.deployments import nightly_parameters

    config = RetrainConfig.model_validate(nightly_parameters()["config"])
    # A relative workdir resolves against the folder the flow run starts in.
    assert (config.data, config.weights) == ("demo", "random:0")
    assert config.workdir == Path.cwd() / "workdir"
    changed = nightly_parameters({"epochs": 3, "workdir": "/srv/work"})["config"]
    assert changed == {"data": "demo", "weights": "random:0", "workdir": "/srv/work", "epochs": 3}


def test_the_flow_refuses_inputs_that_cannot_work_before_writing_anything(small_demo_dir, tmp_path):
    """Deployment runs get the CLI's preflight: a wrong weights file fails the run at once,
    with one line, and nothing is written (not even the workdir)."""
    import keras

    from inception_retrain.config import RetrainConfig
    from inception_retrain.flows.retrain import run_retrain

    # A real Keras weights file, of the wrong architecture.
    wrong = tmp_path / "tiny-dense.weights.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(wrong)
    config = RetrainConfig(
        data=str(small_demo_dir), weights=str(wrong), workdir=tmp_path / "work", image_size=75
    )
    run_dir, ok, message = run_retrain(config)

    assert not ok and run_dir is None
    assert message.startswith(f"preflight failed: weights file {wrong} does not fit InceptionV3")
    assert "\n" not in message
    assert not (tmp_path / "work").exists()


def test_an_empty_test_split_fails_the_run_right_after_ingest_with_a_summary(
    small_demo_dir, tmp_path
):
    """The preflight sees a test folder with image files; ingestion finds none of them valid,
    so the run fails right after ingest, with the failure summary in its run folder."""
    from inception_retrain.config import RetrainConfig
    from inception_retrain.flows.retrain import run_retrain
    from inception_retrain.runs.run_folder import read_config, read_status

    data = tmp_path / "data"
    for class_dir in (p for p in small_demo_dir.iterdir() if p.is_dir()):
        shutil.copytree(class_dir, data / "train" / class_dir.name)
    (data / "test" / "blobs").mkdir(parents=True)
    (data / "test" / "blobs" / "broken.jpg").write_text("not an image")
    config = RetrainConfig(
        data=str(data), weights="random:0", workdir=tmp_path / "work", image_size=75
    )
    run_dir, ok, message = run_retrain(config)

    assert not ok
    assert message.startswith("ingest failed: the test split is empty (images per split: ")
    assert "'test': 0" in message and "\n" not in message
    assert run_dir is not None and run_dir.parent == tmp_path / "work" / "runs"
    assert read_config(run_dir)[0]["data"] == str(data)
    assert read_status(run_dir)["state"] == "failed"
    failure = json.loads((run_dir / "failure.json").read_text())
    assert failure["state"] == "Failed" and failure["message"] == message
    assert message in (run_dir / "failure.md").read_text()
    assert (run_dir / "ingest.json").is_file() and (run_dir / "manifest.parquet").is_file()
    assert not (tmp_path / "work" / "cache").exists()  # nothing extracted, nothing trained
    assert not (run_dir / "head.keras").exists()


@pytest.mark.parametrize(
    ("data", "label"),
    [
        ("demo", "demo"),
        ("tfds:cats_vs_dogs?data_dir=/x", "tfds-cats_vs_dogs"),
        ("/data/photos/", "photos"),
    ],
)
def test_source_label_names_the_data_in_task_run_names(data, label):
    from inception_retrain.flows.retrain import source_label

    assert source_label(data) == label


def test_markdown_for_ui_replaces_only_relative_images(tmp_path):
    from inception_retrain.tasks.ui import markdown_for_ui

    text = "# R\n\n![ROC curve](roc.png)\n\n![inline](data:image/png;base64,AAAA)\n"
    shown = markdown_for_ui(text, tmp_path, "evaluation.html")
    assert "![ROC curve](roc.png)" not in shown
    assert f"*ROC curve: plot `roc.png` in `{tmp_path}` (embedded in evaluation.html)*" in shown
    assert "![inline](data:image/png;base64,AAAA)" in shown


def test_a_value_the_schema_cannot_check_fails_the_run_before_any_stage(tmp_path):
    from inception_retrain.flows.retrain import retrain

    missing = tmp_path / "no-such-folder"
    state = retrain(
        config={"data": str(missing), "workdir": str(tmp_path / "work")}, return_state=True
    )
    assert state.is_failed()
    assert "config.data" in state.message and f"data folder not found: {missing}" in state.message
    assert not (tmp_path / "work").exists()  # the flow body never ran: no run folder


def test_cli_run_on_all_corrupt_data_fails_with_one_clean_error_and_no_traceback(tmp_path):
    """An expected failure: exit code 1, the cause as one `error:` line, no traceback anywhere,
    the run folder as stdout's last line, and the failure summary inside it."""
    data = tmp_path / "data"
    for label, name in (("cats", "a.jpg"), ("dogs", "b.png")):
        (data / label).mkdir(parents=True)
        (data / label / name).write_text("not an image")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "inception_retrain.cli",
            "run",
            "--data",
            str(data),
            "--workdir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: ingest failed: no valid images in {data}: 2 files skipped (2 not-an-image); "
        "see skipped.csv in the run folder"
    ]
    assert "Traceback" not in done.stderr + done.stdout
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path / "work" / "runs"
    assert "no valid images" in (run_dir / "failure.md").read_text()


def test_prefect_yaml_is_generated_from_the_one_definition_and_the_schedule_is_settable():
    """The schedule is written once (config.NIGHTLY_CRON); prefect.yaml is the generator's
    default output, and `serve` and the generator both take another schedule."""
    from typer.testing import CliRunner

    from inception_retrain.cli.main import app
    from inception_retrain.flows.deployments import NIGHTLY_RETRAIN, build_deployments, prefect_yaml

    assert (REPO / "prefect.yaml").read_text() == prefect_yaml()
    served = {d.name: d for d in build_deployments(cron="30 3 * * 1-5", timezone="Europe/Paris")}
    (schedule,) = served[NIGHTLY_RETRAIN].schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 3 * * 1-5", "Europe/Paris")
    written = CliRunner().invoke(app, ["prefect-yaml", "--cron", "30 3 * * 1-5"])
    assert written.exit_code == 0, written.output
    deployments = yaml.safe_load(written.output)["deployments"]
    (nightly,) = [d for d in deployments if d.get("schedules")]
    assert nightly["schedules"][0]["cron"] == "30 3 * * 1-5"
    refused = CliRunner().invoke(app, ["prefect-yaml", "--cron", "every night"])
    assert refused.exit_code == 2 and "--cron" in refused.output
