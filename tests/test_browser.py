"""What a person sees, checked in a real headless Chromium (Debian's `chromium` package).

  * the Prefect UI page of a served run (tests/prefect_fixtures.py), its task runs and its
    artifacts, and the rendered evaluation report with the run's accuracy;
  * evaluation.html and dropout_impact.html of that run, opened from disk: every image loads
    and no request leaves the machine.

Screenshots go to test-output/ at the repository root. Skipped, with the reason, only when
Chromium or playwright is missing (CI installs `chromium` with apt and `playwright` from the
dev extra; never `playwright install`).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from prefect_fixtures import REPO, api_client

from inception_retrain.runs.run_folder import run_dir_for_flow_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT = REPO / "test-output"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.skipif(
        not Path(CHROMIUM).is_file(), reason="chromium not installed (apt-get install chromium)"
    ),
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (pip install -e '.[dev]')"
    )
    OUTPUT.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a new, empty profile
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(30_000)
        yield context
        context.close()


def _markdown_metric(markdown: str, name: str) -> str:
    """The value cell of `name` in the markdown table `| metric | value |`."""
    match = re.search(rf"^\|\s*{name}\s*\|\s*([^|]+?)\s*\|", markdown, re.MULTILINE)
    assert match, f"no '{name}' row in the report"
    return match.group(1)


def test_prefect_ui_shows_the_run_its_tasks_and_the_rendered_evaluation_report(
    browser, server_runs
):
    run_id = server_runs.first
    run_dir = run_dir_for_flow_run(server_runs.workdir, run_id)
    accuracy_text = _markdown_metric((run_dir / "evaluation.md").read_text(), "accuracy")
    accuracy = json.loads((run_dir / "evaluation.json").read_text())["headline"]["accuracy"]
    assert float(accuracy_text) == pytest.approx(accuracy, abs=1e-4)
    with api_client(server_runs.server.api_url) as client:
        flow_run = client.read_flow_run(run_id)

    page = browser.new_page()
    page.goto(f"{server_runs.server.url}/runs/flow-run/{run_id}", wait_until="networkidle")
    page.get_by_text(flow_run.name).first.wait_for()
    page.get_by_text("Completed").first.wait_for()

    page.locator("li.p-tab#task-runs").click()
    for prefix in ("ingest-", "extract-", "train-", "evaluate-", "dropout-report-", "promote-"):
        page.get_by_text(re.compile(f"^{re.escape(prefix)}")).first.wait_for()
    page.screenshot(path=OUTPUT / "prefect-flow-run-task-runs.png", full_page=True)

    page.locator("li.p-tab#artifacts").click()
    for key in ("evaluation-report", "dropout-impact", "metrics", "skipped-files"):
        page.get_by_text(key, exact=True).first.wait_for()
    page.screenshot(path=OUTPUT / "prefect-flow-run-artifacts.png", full_page=True)

    page.get_by_text("evaluation-report", exact=True).first.click()
    page.wait_for_url(re.compile(r"/artifacts/artifact/"))
    heading = page.locator("h1", has_text="Evaluation report")
    heading.wait_for()
    assert heading.is_visible()  # rendered markdown: a heading, not "# Evaluation report"
    row = page.locator("tr", has=page.locator("td", has_text=re.compile(r"^accuracy$"))).first
    row.wait_for()
    assert row.is_visible() and accuracy_text in row.inner_text()
    # The report's plots are files in the run folder: the UI shows a note, no broken image.
    broken = page.evaluate("[...document.images].filter(i => i.naturalWidth === 0).length")
    assert broken == 0
    page.screenshot(path=OUTPUT / "prefect-evaluation-report.png", full_page=True)
    page.close()


def test_prefect_ui_shows_why_the_corrupt_run_failed(browser, server_runs):
    with api_client(server_runs.server.api_url) as client:
        flow_run = client.read_flow_run(server_runs.corrupt)
    assert flow_run.state.is_failed() and flow_run.state.message.startswith("ingest failed: ")

    page = browser.new_page()
    page.goto(f"{server_runs.server.url}/runs/flow-run/{flow_run.id}", wait_until="networkidle")
    page.get_by_text("Failed").first.wait_for()
    page.locator("li.p-tab#details").click()
    page.get_by_text("State Message", exact=True).wait_for()
    see_more = page.get_by_text("See More", exact=True)
    if see_more.count():  # the UI folds a long message
        see_more.first.click()
    cause = page.get_by_text(flow_run.state.message).first
    cause.wait_for()
    assert cause.is_visible()
    page.screenshot(path=OUTPUT / "prefect-failed-run-details.png", full_page=True)
    page.close()


@pytest.mark.parametrize("name", ["evaluation.html", "dropout_impact.html"])
def test_html_report_renders_offline_with_every_image(browser, server_runs, name):
    report = run_dir_for_flow_run(server_runs.workdir, server_runs.first) / name
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(report.as_uri(), wait_until="load")

    assert page.locator("h1").first.inner_text().strip()
    images = page.evaluate(
        "[...document.images].map(i => ({src: i.src.slice(0, 40), complete: i.complete,"
        " width: i.naturalWidth}))"
    )
    assert images, f"{name} has no images"
    assert all(i["complete"] and i["width"] > 0 for i in images), images
    left = [url for url in requests if not url.startswith(("file://", "data:"))]
    assert not left, f"{name} requested {left}"
    stem = name.removesuffix(".html")
    page.screenshot(path=OUTPUT / f"{stem}-top.png")  # what a reader sees first
    page.screenshot(path=OUTPUT / f"{stem}.png", full_page=True)
    page.close()


# A program's name on a page: a snake_case token (not part of a file name or path) or a
# Keras layer name of the head; commands and paths in <code> are meant to be typed, and left.
SNAKE_CASE = re.compile(r"(?<![\w./-])[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+(?![\w./-])")
KERAS_NAMES = re.compile(r"\b(hidden_\d|dropout_\d|after_dense\d|after_both)\b")


def _readable_text(page) -> str:
    """What a reader can see with every <details> opened, without the <code> elements."""
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    page.evaluate("document.querySelectorAll('code').forEach(c => { c.style.display = 'none'; })")
    return page.evaluate("document.body.innerText")


@pytest.mark.parametrize("name", ["evaluation.html", "dropout_impact.html"])
def test_no_internal_name_reaches_the_page(browser, server_runs, name):
    report = run_dir_for_flow_run(server_runs.workdir, server_runs.first) / name
    page = browser.new_page()
    page.goto(report.as_uri(), wait_until="load")
    text = _readable_text(page)
    page.close()
    assert len(text.split()) > 100  # the whole page, folded parts included
    assert not KERAS_NAMES.findall(text), KERAS_NAMES.findall(text)
    assert not SNAKE_CASE.findall(text), sorted(set(SNAKE_CASE.findall(text)))


def test_the_dropout_report_answers_on_the_first_screen_and_its_contents_resolve(
    browser, server_runs
):
    report = run_dir_for_flow_run(server_runs.workdir, server_runs.first) / "dropout_impact.html"
    page = browser.new_page()  # the 1400 x 1000 viewport of the fixture
    page.goto(report.as_uri(), wait_until="load")
    sentence = page.locator("#answer-sentence")
    assert sentence.inner_text().startswith("Only the head")
    table = page.locator("#layer-table")
    header = [cell.strip() for cell in table.locator("thead th").all_inner_texts()]
    assert header == ["layer", "forward pass", "gradients", "weights at inference"]
    layers = [cell.strip() for cell in table.locator("tbody th").all_inner_texts()]
    assert layers[0].startswith("Frozen backbone") and layers[1] == "Flatten"
    assert layers[-2].startswith("Dropout(") and layers[-1] == "Dense(1)"
    for cell in table.locator("tbody td").all_inner_texts():
        assert re.search(r"\d", cell) or cell.strip() == "no weights", cell
    for box in (sentence.bounding_box(), table.bounding_box()):  # at scroll 0
        assert box["x"] >= 0 and box["x"] + box["width"] <= 1400, box
        assert box["y"] >= 0 and box["y"] + box["height"] <= 1000, box
    page.screenshot(path=OUTPUT / "dropout_impact-first-screen.png")

    targets = page.evaluate(
        "[...document.querySelectorAll('#contents a')].map(a => a.getAttribute('href'))"
    )
    assert len(targets) >= 12  # the sections and every finding
    for target in targets:
        assert target.startswith("#"), target
        assert page.locator(f"[id='{target[1:]}']").count() == 1, target
    page.locator(f"#contents a[href='{targets[-1]}']").click()  # the browser follows it
    page.wait_for_function(f"location.hash === '{targets[-1]}'")
    tags = page.locator("h3 .tag").all_inner_texts()
    assert tags and all(re.fullmatch(r"[CF]\d · (mechanism|effect|practice)", t) for t in tags)
    assert page.locator("#legend dt").count() >= 5  # the codes' legend
    page.close()
