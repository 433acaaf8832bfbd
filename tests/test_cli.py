"""The command line a user meets: typed and grouped options, switches, --version, listings a
user can work with (tables and --json), and one-line refusals before TensorFlow loads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inception_retrain.cli.main import app
from inception_retrain.cli.options import (
    OPTION_FIELDS,
    OTHER_PANEL,
    PANELS,
    config_from_options,
    option_name,
    option_type,
    panel_of,
)
from inception_retrain.plumbing.schemas import write_document
from inception_retrain.registry import versions
from inception_retrain.runs import run_folder

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "inception_retrain.cli"]


def help_text(*command: str) -> str:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_every_option_shows_its_type_limits_choices_and_a_truthful_default():
    text = help_text("run")
    assert "--image-size" in text and "INTEGER RANGE [75<=x<=1024]" in text
    assert "FLOAT RANGE [0<=x<1]" in text  # --dropout-rate: 1 is refused, and says so
    assert "<after_dense2|after_both|none>" in text  # a Literal's choices
    assert "INT,INT" in text and "[default: 512,1024]" in text  # --hidden-units
    assert "[default: (WORKDIR/cache)]" in text and "[default: (this process)]" in text
    assert "[default: None]" not in text
    for name in OPTION_FIELDS:
        annotation, extra = option_type(name)
        assert annotation is not str or extra.get("metavar") not in (None, ""), name
        assert option_name(name) in text, name


COMMANDS = [
    ["run"],
    ["serve"],
    ["demo-data"],
    ["predict"],
    ["dropout-report"],
    ["prefect-yaml"],
    ["cache", "ls"],
    ["cache", "prune"],
    ["runs", "ls"],
    ["runs", "show"],
    ["runs", "compare"],
    ["models", "ls"],
    ["models", "prune"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_no_option_of_any_command_shows_a_bare_python_type(command):
    # Typer's fallback shows "<str>", "<bool>", "<path>"; every option says what it takes
    # (or, for a switch, nothing). Typer's own --help is left as typer draws it.
    options = [
        line
        for line in help_text(*command).splitlines()
        if re.match(r"^│ +(\* +)?--", line) and "--help" not in line
    ]
    assert options, command
    assert not [
        line
        for line in options
        if re.search(r"<(str|bool|path|int|float|list\[str\])( range)?>", line)
    ]


def test_options_sit_in_panels_by_subject():
    text = help_text("run")
    assert not [name for name in OPTION_FIELDS if panel_of(name) == OTHER_PANEL]
    shown = [panel for panel, _ in PANELS if f"─ {panel} " in text]
    expected = [p for p, _ in PANELS if any(panel_of(n) == p for n in OPTION_FIELDS)]
    assert shown == expected  # every used panel, in PANELS' order
    head = text[text.index("─ Head and training ") : text.index("─ Augmented views ")]
    assert "--dropout-rate" in head and "--epochs" in head and "--weights" not in head


def test_switches_take_no_value_and_have_a_no_form(tmp_path):
    """`--mixed-precision --workdir W` used to swallow --workdir as the switch's value."""
    from inception_retrain.cli.options import given_options

    captured = {}

    def capture(ctx, **options):
        captured.update(given_options(ctx, options))

    import typer

    from inception_retrain.cli.options import with_config_options

    probe = typer.Typer()
    probe.command()(with_config_options(capture))
    workdir = str(tmp_path / "w")
    result = CliRunner().invoke(
        probe, ["--mixed-precision", "--workdir", workdir, "--no-augment-horizontal-flip"]
    )
    assert result.exit_code == 0, result.output
    assert captured == {
        "mixed_precision": True,
        "workdir": Path(workdir),
        "augment_horizontal_flip": False,
    }  # only what was given: a served deployment's parameters hold nothing else
    config = config_from_options(captured)
    assert config.mixed_precision and not config.augment.horizontal_flip
    assert config.workdir == Path(workdir)


def test_version_matches_the_package():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"inception-retrain {version}"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            ["run", "--image-size", "50"],
            "--image-size: Input should be greater than or equal to 75",
        ),
        (["run", "--dropout-rate", "1"], "--dropout-rate: Input should be less than 1"),
        (["run", "--device", "tpu"], "'tpu' is not one of"),
        (["run", "--hidden-units", "1,2,3"], "--hidden-units: expected 2 comma-separated values"),
        (["dropout-report", "--run", "/no/such/run"], "run folder /no/such/run does not exist"),
        (["runs", "show", "nope", "--workdir", "/no/such/workdir"], "no run 'nope'"),
    ],
)
def test_a_bad_call_is_one_line_with_exit_code_2_and_no_tensorflow_noise(arguments, expected):
    done = subprocess.run([*CLI, *arguments], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


def test_refusals_happen_before_tensorflow_is_imported(tmp_path):
    """Every command checks its inputs before importing TensorFlow or Prefect."""
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['inception-retrain', *sys.argv[1:]]\n"
        "try:\n"
        "    runpy.run_module('inception_retrain.cli', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'prefect') if m in sys.modules))\n"
    )
    calls = [
        ["run", "--data", str(tmp_path / "missing")],
        ["dropout-report", "--run", str(tmp_path / "missing")],
        ["predict", "--workdir", str(tmp_path), str(tmp_path / "x.jpg")],
        ["runs", "ls", "--workdir", str(tmp_path)],
        ["models", "ls", "--workdir", str(tmp_path)],
        ["serve", "--cron", "not a cron", "--workdir", str(tmp_path)],
        ["prefect-yaml", "--timezone", "Mars/Olympus"],
    ]
    for arguments in calls:
        done = subprocess.run(
            [sys.executable, "-c", probe, *arguments], capture_output=True, text=True, timeout=120
        )
        assert done.stdout.strip().splitlines()[-1] == "[]", (arguments, done.stdout, done.stderr)


@pytest.mark.parametrize(
    ("cron", "timezone"),
    [
        ("0 2 * * *", "UTC"),
        ("*/15 1-5 * * mon-fri", "Europe/Paris"),
        ("0 2 * *", "UTC"),
        ("61 2 * * *", "UTC"),
        ("H 2 * * *", "UTC"),
        ("R 2 * * *", "UTC"),
        ("0 2 * * *", "Mars/Olympus"),
        ("@daily", "America/New_York"),
    ],
)
def test_the_quick_schedule_check_agrees_with_prefects_cron_schedule(cron, timezone):
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    from inception_retrain.cli.main import check_schedule
    from inception_retrain.cli.options import UsageError

    try:
        CronSchedule(cron=cron, timezone=timezone)
        prefect_accepts = True
    except ValidationError:
        prefect_accepts = False
    try:
        check_schedule(cron, timezone)
        ours_accepts = True
    except UsageError:
        ours_accepts = False
    assert ours_accepts == prefect_accepts


# --- listings --------------------------------------------------------------------------------


def make_run(workdir: Path, name: str, state: str, settings: dict, metrics=None, promotion=None):
    run_dir = workdir / "runs" / name
    run_dir.mkdir(parents=True)
    run_folder.write_config(run_dir, settings, flow_run_id=None)
    write_document(
        run_dir / "ingest.json", "ingest-counts", 1, {"ok": 40, "skipped": 2, "per_split": {}}
    )
    run_folder.write_status(run_dir, state, metrics=metrics, promotion=promotion)
    (run_dir / "evaluation.html").write_text("<html></html>")
    return run_dir


@pytest.fixture
def workdir(tmp_path) -> Path:
    from inception_retrain.config import RetrainConfig

    base = RetrainConfig(workdir=tmp_path).model_dump(mode="json")
    other = RetrainConfig(
        workdir=tmp_path, head={"dropout_rate": 0.5, "dropout_placement": "after_both"}, epochs=4
    ).model_dump(mode="json")
    make_run(
        tmp_path,
        "20261201-010000-aaaaaa",
        "completed",
        base,
        metrics={"roc_auc": 0.91, "accuracy": 0.85},
        promotion={
            "decision": "promoted",
            "version": "v0001-x",
            "metric": "roc_auc",
            "score": 0.91,
        },
    )
    make_run(tmp_path, "20261202-010000-bbbbbb", "failed", other, metrics={"roc_auc": 0.7})
    version = tmp_path / "models" / "v0001-20261201T010500Z"
    version.mkdir(parents=True)
    lineage = {"created": "2026-12-01T01:05:00+00:00", "run_dir": "/w/runs/20261201-010000-aaaaaa"}
    document = {"metrics": {"roc_auc": 0.91, "accuracy": 0.85}, "lineage": lineage}
    write_document(
        version / "metrics.json", versions.METRICS_KIND, versions.METRICS_VERSION, document
    )
    return tmp_path


def test_runs_ls_shows_score_dropout_model_and_report(workdir):
    result = CliRunner(env={"COLUMNS": "250"}).invoke(
        app, ["runs", "ls", "--workdir", str(workdir)]
    )
    assert result.exit_code == 0, result.output
    first, second = result.output.strip().splitlines()[1:]
    assert re.search(r" \d{4}-\d\d-\d\d \d\d:\d\d UTC ", first) and "roc_auc 0.9100" in first
    assert "Dropout(0.2) after Dense(1024)" in first and "v0001-x (promoted)" in first
    assert str(workdir / "runs" / "20261201-010000-aaaaaa" / "evaluation.html") in first
    assert "failed" in second and "Dropout(0.5) after both Dense layers" in second
    assert "roc_auc 0.7000" in second  # evaluated before it failed


def test_every_listing_takes_json(workdir):
    runner = CliRunner()
    runs = json.loads(
        runner.invoke(app, ["runs", "ls", "--workdir", str(workdir), "--json"]).output
    )
    assert [r["state"] for r in runs] == ["completed", "failed"]
    assert runs[0]["score"] == 0.91 and runs[0]["started"].endswith("+00:00")
    models = json.loads(
        runner.invoke(app, ["models", "ls", "--workdir", str(workdir), "--json"]).output
    )
    assert models[0]["metrics"]["accuracy"] == 0.85 and models[0]["run"].endswith("aaaaaa")
    caches = runner.invoke(app, ["cache", "ls", "--workdir", str(workdir), "--json"])
    assert json.loads(caches.output) == []
    shown = json.loads(
        runner.invoke(app, ["runs", "show", "20261202", "--workdir", str(workdir), "--json"]).output
    )
    assert shown["run"] == "20261202-010000-bbbbbb" and shown["settings"]["epochs"] == 4


def test_models_ls_shows_score_date_and_source_run(workdir):
    result = CliRunner(env={"COLUMNS": "250"}).invoke(
        app, ["models", "ls", "--workdir", str(workdir)]
    )
    row = result.output.strip().splitlines()[1]
    assert "0.91" in row and "0.85" in row and "2026-12-01 01:05 UTC" in row
    assert "20261201-010000-aaaaaa" in row


def test_runs_show_and_compare_put_settings_and_metrics_side_by_side(workdir):
    runner = CliRunner()
    shown = runner.invoke(app, ["runs", "show", "20261201", "--workdir", str(workdir)]).output
    assert re.search(r"^dropout_rate\s+0\.2$", shown, re.M)
    assert re.search(r"^roc_auc\s+0\.91$", shown, re.M)
    compared = runner.invoke(
        app, ["runs", "compare", "20261201", "20261202", "--workdir", str(workdir)]
    )
    text = compared.output
    assert re.search(r"^dropout_rate\s+0\.2\s+0\.5$", text, re.M)
    assert re.search(r"^epochs\s+10\s+4$", text, re.M)
    assert re.search(r"^roc_auc\s+0\.91\s+0\.7$", text, re.M)
    assert "batch_size" not in text  # equal settings are left out
    ambiguous = runner.invoke(app, ["runs", "show", "2026120", "--workdir", str(workdir)])
    assert ambiguous.exit_code == 2 and "names 2 runs" in ambiguous.output


def test_every_listing_time_is_utc_in_one_format():
    from inception_retrain.cli.workdir_commands import when

    assert when("2026-12-06T22:04:31+01:00") == "2026-12-06 21:04 UTC"  # converted, not relabelled
    assert when("2026-12-06T21:04:31+00:00") == "2026-12-06 21:04 UTC"
    assert when(None) == "-"
