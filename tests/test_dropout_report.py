"""The whole dropout-impact report on a tiny real run, through the CLI command.

`tiny_run` (conftest) is a real ingest -> extract -> train -> evaluate on demo images (random
weights, 75 px, a 16-16 head with Dropout(0.2) after hidden_2). Its files are copied into a
fresh run folder, so the report is written there and the shared run stays untouched.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from inception_retrain.cli.main import app, dropout_report_command
from inception_retrain.dropout.verdicts import ORDER, VERDICTS
from inception_retrain.run_folder import write_config


@pytest.fixture(scope="module")
def reported_run(tiny_run, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("dropout-run")
    for name in ("manifest.parquet", "ingest.json", "extract.json", "head.keras"):
        shutil.copy(tiny_run.run_dir / name, run_dir / name)
    config = tiny_run.config.model_copy(update={"sweep_epochs": 1, "mc_passes": 5})
    write_config(run_dir, config, flow_run_id=None)
    # The command's function itself (CliRunner would hand Prefect's temporary server a
    # console stream that is closed before the server's exit log).
    dropout_report_command(
        run=run_dir, sweep_rates="0,0.5", sweep_placements="after_dense2,after_both",
        sweep_seeds=1, sweep_epochs=None, sweep_workers=1,
    )  # fmt: skip
    return run_dir, json.loads((run_dir / "dropout_impact.json").read_text())


def test_report_has_twelve_computed_entries_and_answer_first(reported_run):
    run_dir, document = reported_run
    assert [c["id"] for c in document["claims"]] == list(ORDER)
    for claim in document["claims"]:
        assert claim["verdict"] in VERDICTS and claim["claim"] and claim["numbers"]
    assert document["answer"][0].startswith("Short answer")
    assert "bitwise identical" in document["answer"][0]

    html = (run_dir / "dropout_impact.html").read_text()
    # the title, the random-weights banner (the tiny run has random weights), the answer
    banner = r'<p class="banner" id="random-weights-banner">[^<]*RANDOM[^<]*</p>'
    assert re.search(rf"<h1>[^<]+</h1>\s*{banner}\s*<section><h2>Answer</h2>", html)
    assert html.index(document["answer"][0][:60]) < html.index("C1: ")
    assert not re.search(r"(src|href)=\"(?!data:)", html), "external resource in the HTML"
    assert html.count('src="data:image/png;base64,') >= 7
    markdown = (run_dir / "dropout_impact.md").read_text()
    assert markdown.startswith("# ") and document["answer"][0] in markdown
    assert "> **Warning: the backbone has RANDOM weights" in markdown


def test_report_numbers_come_from_the_run_model(reported_run):
    _, document = reported_run
    claims = {c["id"]: c for c in document["claims"]}
    forward = claims["F1"]["details"]["forward"]
    assert forward["n_backbone_layers"] > 200  # every InceptionV3 layer up to mixed7
    assert forward["touched"] == ["dropout", "predictions"]
    assert forward["backbone_vs_cache"]["max_abs_delta"] <= 1e-6  # float32 cache: same model
    assert claims["F1"]["verdict"] == "supported"
    check = claims["F2"]["details"]["backward"]["dropped_columns"][-1]
    assert check["dense"] == "hidden_2" and check["dropped_units_total"] > 0
    assert check["max_abs_gradient_dropped_kernel_columns"] == 0.0
    assert claims["F3"]["numbers"]["backbone_variables_changed"] == 0
    assert claims["F3"]["numbers"]["head_variables_changed"] > 0
    assert claims["F3"]["verdict"] == "supported"
    assert claims["C6"]["verdict"] == "supported with a correction"  # frozen layers untouched

    sweep = claims["F5"]["details"]["sweep"]
    cells = {(c["rate"], c["placement"]) for c in sweep["grid"]}
    assert {(0.0, "after_dense2"), (0.0, "after_both"), (0.5, "after_both")} <= cells
    # rate 0 in any placement is the one "no dropout" model, trained once per seed
    assert sweep["trainings"] == 3 and len(sweep["configs"]) == 3


def test_sweep_ran_as_one_prefect_task_run_per_training(reported_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    _, document = reported_run
    sweep = next(c for c in document["claims"] if c["id"] == "F5")["details"]["sweep"]
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="sweep-"))
        )
    names = {run.name for run in runs if run.state and run.state.is_completed()}
    assert {"sweep-none-0.0-seed0", "sweep-after_both-0.5-seed0"} <= names
    assert len(names) >= sweep["trainings"]


def test_cli_rejects_a_folder_that_is_not_a_run(tmp_path):
    result = CliRunner().invoke(app, ["dropout-report", "--run", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a finished run folder" in result.output
