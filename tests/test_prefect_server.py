"""The product as users run it: a real Prefect server, `inception-retrain serve`, real runs.

One server, one serve process and one pair of runs (a tiny retrain that completes, and an
all-corrupt one triggered with `prefect deployment run` while the first is queued or running)
are shared by every test here and by test_browser.py (fixtures in prefect_fixtures.py).
Everything is asserted through the Prefect client against what the run folders hold.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect_fixtures import NIGHTLY, REPO, api_client, child_env, deployment_runs, tail

from inception_retrain.runs.run_folder import run_dir_for_flow_run

STAGE_PREFIXES = (
    "ingest-",
    "extract-",
    "train-",
    "evaluate-",
    "dropout-report-",
    "decide-promotion-",
    "export-",
    "promote-",
    "report-",
)


def _run_dir(runs, flow_run_id) -> Path:
    run_dir = run_dir_for_flow_run(runs.workdir, flow_run_id)
    assert run_dir is not None, f"no run folder for {flow_run_id}:\n{tail(runs.serve_log)}"
    return run_dir


def _artifacts(client, flow_run_id) -> list:
    from prefect.client.schemas.filters import ArtifactFilter

    return client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id={"any_": [flow_run_id]})
    )


def _by_key(artifacts, key):
    found = [a for a in artifacts if a.key == key]
    assert len(found) == 1, f"expected one '{key}' artifact, got {[a.key for a in artifacts]}"
    return found[0]


def _table(artifact) -> list[dict]:
    data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    return data


def test_run_completed_with_every_stage_as_a_named_task_run(server_runs):
    from prefect.client.schemas.filters import FlowRunFilter

    run_id = server_runs.first
    with api_client(server_runs.server.api_url) as client:
        run = client.read_flow_run(run_id)
        assert run.state.is_completed(), f"{run.state}\n{tail(server_runs.serve_log)}"
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run_id]}))
    names = sorted(t.name for t in task_runs)
    manifest = json.loads((_run_dir(server_runs, run_id) / "extract.json").read_text())
    for prefix in STAGE_PREFIXES:
        matching = [t for t in task_runs if t.name.startswith(prefix)]
        assert len(matching) == 1, f"expected one task run named {prefix}*: {names}"
        assert matching[0].state.is_completed(), names
    # Names carry the data they ran on: extract-<manifest fingerprint[:8]>.
    assert f"extract-{manifest['manifest_fingerprint'][:8]}" in names
    # Inputs link to the task runs that produced them, never to a subflow run (the Prefect
    # UI's task-run list cannot show a `flow_run` input and comes up empty).
    kinds = {i.input_type for t in task_runs for ins in t.task_inputs.values() for i in ins}
    assert kinds == {"task_run"}, kinds


def test_second_trigger_waited_for_the_running_one(server_runs):
    with api_client(server_runs.server.api_url) as client:
        runs = sorted(
            (client.read_flow_run(i) for i in (server_runs.first, server_runs.corrupt)),
            key=lambda r: r.start_time,
        )
        earlier, later = runs
        # Deployment concurrency limit 1: no overlap, and the later run was held back.
        assert later.start_time >= earlier.end_time, (earlier.end_time, later.start_time)
        held = [s.name for s in client.read_flow_run_states(later.id)]
        assert "AwaitingConcurrencySlot" in held, held


def test_keyed_artifacts_hold_the_run_folder_reports(server_runs):
    from prefect.client.schemas.filters import ArtifactFilter

    from inception_retrain.tasks.ui import markdown_for_ui

    run_dir = _run_dir(server_runs, server_runs.first)
    with api_client(server_runs.server.api_url) as client:
        artifacts = _artifacts(client, server_runs.first)

        metrics = {row["metric"]: row["value"] for row in _table(_by_key(artifacts, "metrics"))}
        evaluation = json.loads((run_dir / "evaluation.json").read_text())
        assert metrics["accuracy"] == evaluation["headline"]["accuracy"]
        assert metrics["roc_auc"] == evaluation["headline"]["roc_auc"]

        report = _by_key(artifacts, "evaluation-report")
        expected = markdown_for_ui((run_dir / "evaluation.md").read_text(), run_dir, "x")
        assert report.type == "markdown" and report.data.startswith("# Evaluation report")
        assert report.data.splitlines()[:20] == expected.splitlines()[:20]
        assert "## Promotion" in report.data  # published after promote appended its decision

        impact = _by_key(artifacts, "dropout-impact")
        first_line = (run_dir / "dropout_impact.md").read_text().splitlines()[0]
        assert impact.type == "markdown" and impact.data.splitlines()[0] == first_line

        sweep = _table(_by_key(artifacts, "dropout-sweep"))
        impact_json = json.loads((run_dir / "dropout_impact.json").read_text())
        (f5,) = [c for c in impact_json["claims"] if c["id"] == "F5"]
        configs = f5["details"]["sweep"]["configs"]
        assert [(r["rate"], r["placement"]) for r in sweep] == [
            (c["rate"], c["placement"]) for c in configs
        ]
        assert [r["accuracy"] for r in sweep] == [c["accuracy"] for c in configs]  # out of fold

        with open(run_dir / "skipped.csv", newline="") as handle:
            skipped = list(csv.DictReader(handle))
        table = _table(_by_key(artifacts, "skipped-files"))
        assert skipped and [r["uri"] for r in table] == [r["uri"] for r in skipped]

        links = {a.key: a.data for a in artifacts if a.type == "markdown" and "html" in a.key}
        assert (run_dir / "evaluation.html").resolve().as_uri() in links["evaluation-html"]
        assert (run_dir / "dropout_impact.html").resolve().as_uri() in links["dropout-impact-html"]

        # Extraction and training reported progress, updated in place to 100%.
        progress = {a.description.split(":")[0]: a for a in artifacts if a.type == "progress"}
        assert {"extract", "train"} <= set(progress), list(progress)
        for name in ("extract", "train"):
            assert float(progress[name].data) == 100.0, progress[name]
            assert progress[name].task_run_id is not None  # attached to the stage's task run
        epochs = server_runs.config["epochs"]
        assert progress["train"].description == f"train: {epochs}/{epochs}"

        # Keyed artifacts are versioned across runs: each run added its version of the key.
        versions = client.read_artifacts(
            artifact_filter=ArtifactFilter(key={"any_": ["skipped-files"]})
        )
        assert {str(a.flow_run_id) for a in versions} >= {server_runs.first, server_runs.corrupt}


def test_all_corrupt_run_failed_with_the_ingest_error_and_a_failure_summary(server_runs, tmp_path):
    from inception_retrain.config import RetrainConfig
    from inception_retrain.data.ingest import ingest
    from inception_retrain.plumbing.errors import DataError

    # The DataError a user gets for this data, computed here independently of the server.
    with pytest.raises(DataError) as raised:
        ingest(RetrainConfig.model_validate(server_runs.corrupt_config).ingest, tmp_path)
    expected = f"ingest failed: {str(raised.value).splitlines()[0]}"

    with api_client(server_runs.server.api_url) as client:
        run = client.read_flow_run(server_runs.corrupt)
        assert run.state.is_failed(), run.state
        assert run.state.message == expected
        assert "\n" not in run.state.message
        skipped = _table(_by_key(_artifacts(client, server_runs.corrupt), "skipped-files"))
        assert len(skipped) == 6  # every file of write_corrupt_dataset, each with a reason
        assert all(row["reason"] for row in skipped)
    failure = json.loads((_run_dir(server_runs, server_runs.corrupt) / "failure.json").read_text())
    assert failure["state"] == "Failed" and failure["message"] == expected


def test_bad_parameters_are_rejected_before_a_run_exists(prefect_server, served):
    from prefect.exceptions import PrefectHTTPStatusError

    with api_client(prefect_server.api_url) as client:
        deployment = client.read_deployment_by_name(NIGHTLY)
        before = {r.id for r in deployment_runs(client, deployment.id)}
        for bad, field in (
            ({"epochs": 0}, "epochs"),
            ({"head": {"dropout_placement": "sideways"}}, "dropout_placement"),
            ({"head": {"dropout_rate": 1.5}}, "dropout_rate"),
            ({"epoch": 3}, "epoch"),  # a typo: RetrainConfig forbids unknown fields
        ):
            with pytest.raises(PrefectHTTPStatusError) as rejected:
                client.create_flow_run_from_deployment(deployment.id, parameters={"config": bad})
            assert rejected.value.response.status_code == 409
            assert field in rejected.value.response.text
        after = {r.id for r in deployment_runs(client, deployment.id)}
        assert after == before


def test_prefect_yaml_deploys_to_what_serve_serves(prefect_server, served, tmp_path):
    """`prefect deploy` of prefect.yaml gives the served nightly-retrain's schedule,
    parameters, concurrency and parameter schema (deployed under another name)."""
    from prefect.client.schemas.actions import WorkPoolCreate

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    nightly = next(d for d in spec["deployments"] if d["name"] == "nightly-retrain")
    nightly["name"] = "nightly-retrain-from-yaml"
    copy = tmp_path / "prefect.yaml"
    copy.write_text(yaml.safe_dump({**spec, "deployments": [nightly]}))
    with api_client(prefect_server.api_url) as client:
        client.create_work_pool(WorkPoolCreate(name=nightly["work_pool"]["name"], type="process"))
    deployed = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefect",
            "--no-prompt",
            "deploy",
            "--prefect-file",
            str(copy),
            "--name",
            "nightly-retrain-from-yaml",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env=child_env(PREFECT_API_URL=prefect_server.api_url, PREFECT_HOME=str(tmp_path / "home")),
    )
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]

    with api_client(prefect_server.api_url) as client:
        from_yaml = client.read_deployment_by_name("retrain/nightly-retrain-from-yaml")
        from_serve = client.read_deployment_by_name(NIGHTLY)
        for deployment in (from_yaml, from_serve):
            assert deployment.global_concurrency_limit.limit == 1
            assert deployment.concurrency_options.collision_strategy.value == "ENQUEUE"
            assert deployment.enforce_parameter_schema is True
            (schedule,) = deployment.schedules
            assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")
        assert from_yaml.parameters == from_serve.parameters
        assert from_yaml.parameter_openapi_schema == from_serve.parameter_openapi_schema
        assert from_serve.entrypoint == "inception_retrain.flows.retrain.retrain"
        assert from_yaml.entrypoint == "inception_retrain/flows/retrain.py:retrain"
