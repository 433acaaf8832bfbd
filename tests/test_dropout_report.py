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
from inception_retrain.dropout.claims import KINDS, ORDER, VERDICTS
from inception_retrain.runs.run_folder import write_config


@pytest.fixture(scope="module")
def reported_run(tiny_run, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("dropout-run")
    for name in ("manifest.parquet", "ingest.json", "extract.json", "head.keras", "history.json"):
        shutil.copy(tiny_run.run_dir / name, run_dir / name)
    config = tiny_run.config.model_copy(update={"sweep_epochs": 2, "mc_passes": 5})
    write_config(run_dir, config.model_dump(mode="json"), flow_run_id=None)
    # The command's function itself (CliRunner would hand Prefect's temporary server a
    # console stream that is closed before the server's exit log).
    dropout_report_command(run=run_dir, sweep_workers=1, sweep_folds="2", sweep_repeats="1")
    return run_dir, json.loads((run_dir / "dropout_impact.json").read_text())


def findings(document) -> dict:
    return {(c["id"], f["kind"]): f for c in document["claims"] for f in c["findings"]}


def test_report_answers_first_in_the_questions_terms_with_every_finding(reported_run):
    run_dir, document = reported_run
    assert [c["id"] for c in document["claims"]] == list(ORDER)
    for finding in findings(document).values():
        assert finding["verdict"] in VERDICTS and finding["rule"] and finding["flip"]
        assert finding["kind"] in KINDS and finding["question"]
    questions = [bullet["question"] for bullet in document["answer"]]
    assert questions[:5] == [
        "The whole network, frozen layers included?",
        "Only the newly added layers?",
        "Only Dense(1024), the layer right before it?",
        "Are the neurons switched off once per epoch?",
        "And at inference?",
    ]
    answers = [bullet["answer"] for bullet in document["answer"]]
    assert answers[0].startswith("No.") and "bitwise identical" in answers[0]
    assert answers[1].startswith("In the forward pass, no: only Dense(16)'s outputs are zeroed")
    assert answers[2].startswith("Its outputs, yes") and "Dense(16) learn differently" in answers[2]
    assert answers[3].startswith("No: a new mask for each sample at each step")
    assert answers[4].startswith("Nothing")
    f5 = findings(document)[("F5", "effect")]
    if f5["verdict"] not in ("supported", "refuted"):  # sweep numbers only when conclusive
        assert "cannot tell" in answers[5] and not re.search(r"\d\.\d", answers[5])
    else:
        assert re.search(r"\[95% CI [-+]\d\.\d{4}, [-+]\d\.\d{4}\]", answers[5])
    for claim in ("C1", "C2", "C4", "F4", "F5"):  # a plot of each effect claim's evidence
        assert findings(document)[(claim, "effect")]["figures"][0] == f"dropout_effect_{claim}.png"
        assert (run_dir / f"dropout_effect_{claim}.png").stat().st_size > 1000
    timings = document["timings_seconds"]
    assert timings["total"] >= timings["F5_sweep"] > 0  # the sweep counts in the total
    # Without fine-tuning, C6's backbone line says no backbone layer can change (its flip).
    assert questions[-1] == "With fine-tuning (mixed7 unfrozen), the backbone's gradients too?"
    assert (
        answers[-1].startswith("Not here: the backbone is frozen") and "0 trainable" in answers[-1]
    )
    c6 = [f for c in document["claims"] if c["id"] == "C6" for f in c["findings"]]
    assert [f["verdict"] for f in c6] == ["clarified", "clarified"]
    assert c6[1]["numbers"]["backbone_trainable_layers"] == 0

    html = (run_dir / "dropout_impact.html").read_text()
    # the title, the random-weights banner (the tiny run has random weights), the answer: one
    # sentence and the layer table, then the contents, the bullets and the findings
    banner = r'<p class="banner" id="random-weights-banner">[^<]*RANDOM[^<]*</p>'
    assert re.search(rf'<h1>[^<]+</h1>\s*{banner}\s*<section id="answer"><h2>Answer</h2>', html)
    sentence = document["answer_sentence"]
    assert sentence.startswith("Only the head: in training, Dropout(0.2) zeroes")
    assert "Dense(16)" in sentence and "the frozen backbone is untouched" in sentence
    layers = [row["layer"] for row in document["layers"]]
    assert layers[0].startswith("Frozen backbone (InceptionV3 to mixed7")
    assert layers[1:] == ["Flatten", "Dense(16)", "Dense(16)", "Dropout(0.2)", "Dense(1)"]
    for row in document["layers"]:  # every cell carries its measured number
        cells = [row[column] for column in row if column != "layer"]
        assert all(re.search(r"\d", cell) or cell == "no weights" for cell in cells), row
    assert document["layers"][0]["forward pass"].startswith("0 of ")
    assert document["layers"][4]["weights at inference"].endswith("(max |out − in| 0)")
    assert sentence.replace("'", "&#39;") in html
    order = [
        html.index("answer-sentence"),
        html.index('id="contents"'),
        html.index(answers[0][:40]),
    ]
    assert order == sorted(order) and order[-1] < html.index('id="c1-effect"')
    for title in KINDS.values():  # the three kinds of claim, apart, in this order
        assert html.count(f"<h2>{title}</h2>") == 1
    mechanism, effect, practice = (html.index(f"<h2>{t}</h2>") for t in KINDS.values())
    assert mechanism < effect < practice < html.index("<h2>Timings</h2>")
    # descriptive headings with the code as a tag; every finding's rule folded away
    assert re.search(
        r'<h3 id="f4-mechanism">Is Dropout the identity at inference[^<]*<span class="tag"', html
    )
    every = sum(len(c["findings"]) for c in document["claims"])
    assert html.count("<summary>How it was decided, and its numbers</summary>") == every
    assert "hidden_" not in html and "after_dense2" not in html
    assert not re.search(r"(src|href)=\"(?!data:|#)", html), "external resource in the HTML"
    assert html.count('src="data:image/png;base64,') >= 8
    assert not re.search(r"<td[^>]*>\s*[\[{]\s*[\"{]", html), "raw JSON in a table cell"
    markdown = (run_dir / "dropout_impact.md").read_text()
    assert markdown.startswith("# ") and answers[0] in markdown
    assert "> **Warning: the backbone has RANDOM weights" in markdown
    assert "*Rule:*" in markdown and "*What would flip it:*" in markdown


def test_report_numbers_come_from_the_run_model(reported_run):
    _, document = reported_run
    claims = {c["id"]: c for c in document["claims"]}
    forward = claims["F1"]["details"]["forward"]
    assert forward["n_backbone_layers"] > 200  # every InceptionV3 layer up to mixed7
    assert forward["touched"] == ["dropout", "predictions"]
    assert forward["backbone_vs_cache"]["max_abs_delta"] <= 1e-6  # float32 cache: same model
    found = findings(document)
    assert found[("F1", "mechanism")]["verdict"] == "supported"
    check = claims["F2"]["details"]["backward"]["dropped_columns"][-1]
    assert check["dense"] == "hidden_2" and check["dropped_units_total"] > 0
    assert check["max_abs_gradient_dropped_kernel_columns"] == 0.0
    assert found[("F3", "mechanism")]["numbers"]["backbone_variables_changed"] == 0
    assert found[("F3", "mechanism")]["verdict"] == "supported"
    assert found[("C6", "mechanism")]["verdict"] == "clarified"  # frozen layers untouched
    for definitional in ("C3", "C5", "F2"):
        assert found[(definitional, "mechanism")]["verdict"] == "clarified"
        assert "definitional" in found[(definitional, "mechanism")]["rule"]
    for practice in ("C1", "C4"):
        assert found[(practice, "practice")]["verdict"] == "not testable here"
    uncertainty = found[("F4", "effect")]["numbers"]
    assert {"main_head_auroc_mc", "main_head_auroc_confidence"} <= set(uncertainty)

    sweep = claims["F5"]["details"]["sweep"]
    assert sweep["grid"] == "claims" and (sweep["folds"], sweep["repeats"]) == (2, 1)
    cells = {(c["rate"], c["placement"]) for c in sweep["grid_cells"]}
    assert cells == {
        (0.0, "none"),
        (0.2, "after_dense2"),
        (0.5, "after_dense2"),
        (0.5, "after_both"),
    }
    assert sweep["trainings"] == 4 * 2 + 1 and len(sweep["configs"]) == 4  # + C2's check
    assert all(r["epochs_run"] == 2 for r in sweep["results"])
    plan = sweep["plan"]
    assert len(plan["content_ids"]) == len(plan["folds"][0]) == plan["pool_size"]
    for comparison in found[("C1", "effect")]["comparisons"]:
        assert comparison["images"] == plan["pool_size"] and comparison["folds"] == 2
        bound = 1.0 if comparison["metric"] in ("accuracy", "brier") else 16.2
        assert -bound <= comparison["low"] <= comparison["high"] <= bound
    for row in sweep["configs"]:  # intervals in range
        assert 0 <= row["accuracy_low"] <= row["accuracy"] <= row["accuracy_high"] <= 1


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
    assert {"sweep-none-0-r0f0", "sweep-after_both-0.5-r0f1"} <= names
    assert len(names) >= sweep["trainings"]


def test_cli_rejects_a_folder_that_is_not_a_run(tmp_path):
    result = CliRunner().invoke(app, ["dropout-report", "--run", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a finished run folder" in result.output
