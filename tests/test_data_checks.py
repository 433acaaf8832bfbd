"""The data checks on real image files and real backbone features, and their report.

Known answers (issue 22, item 5), with the core's stages on one workdir (seeded random
InceptionV3 to mixed7 at 75 px, float16 cache): a reference run of the demo's two classes,
then runs on that folder grown by new images
  * from the same generator: nothing is flagged;
  * at half brightness: the feature drift (overall and per class) and the brightness check
    are flagged;
  * of a texture neither class has: the feature drift is flagged;
and a three-class folder whose third class was emptied: the contract blocks. Fewer than two
classes is ingest's refusal, not the contract's.

Around them: the statistics against brute force and scipy, the manifest's new columns (and
old manifests read clearly), the source folder's definition, "not comparable" and "too few",
and data_report.html opened in a real headless Chromium.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_check_images import write_images
from PIL import Image
from scipy import stats

from inception_retrain.data import distribution_tests as T
from inception_retrain.data.contract import validate_data
from inception_retrain.data.contract_spec import DataCheckSpec, DataContract
from inception_retrain.data.data_reference import DataReference

CLASSES = ("blobs", "stripes")


def relu_features(rng, n, d=48, shift=0.0):
    """Feature-like data: ReLU of correlated Gaussians (many exact zeros, skewed)."""
    mixing = np.random.default_rng(123).normal(size=(d, d)) / np.sqrt(d)
    return np.maximum(rng.normal(size=(n, d)) @ mixing + shift, 0.0)


# --- the statistics --------------------------------------------------------------------------


def test_mmd_statistic_is_the_unbiased_mmd_and_its_p_value_is_exact_and_seeded():
    from inception_retrain.evaluation.drift import gaussian_kernel, mmd_test, prepare

    rng = np.random.default_rng(0)
    x, y = relu_features(rng, 30, 8), relu_features(rng, 12, 8)
    kernel, _ = gaussian_kernel(prepare(x, y, None, False))
    kxx, kyy, kxy = kernel[:30, :30], kernel[30:, 30:], kernel[:30, 30:]
    brute = (
        (kxx.sum() - np.trace(kxx)) / (30 * 29)
        + (kyy.sum() - np.trace(kyy)) / (12 * 11)
        - 2 * kxy.mean()
    )
    one_view = mmd_test(x, y, permutations=19, min_new=2, views=((None, False),))
    assert one_view.statistic == pytest.approx(brute, rel=1e-4)

    shifted = relu_features(rng, 20, shift=2.0)
    a = mmd_test(relu_features(rng, 100), shifted, permutations=999, seed=5)
    b = mmd_test(relu_features(np.random.default_rng(0), 100), shifted, permutations=999, seed=5)
    assert a.p_value == pytest.approx(1 / 1000)  # the smallest a permutation test can give
    assert len(a.null) == 999 and a.scores.shape == (20,)
    c = mmd_test(x, y, permutations=99, seed=3, min_new=2)
    d = mmd_test(x, y, permutations=99, seed=3, min_new=2)
    assert c.p_value == d.p_value and np.array_equal(c.null, d.null)
    del b


def test_witness_scores_rank_the_shifted_images_first():
    from inception_retrain.evaluation.drift import mmd_test

    rng = np.random.default_rng(2)
    clean, shifted = relu_features(rng, 30), relu_features(rng, 10, shift=0.8)
    check = mmd_test(relu_features(rng, 200), np.vstack([clean, shifted]), permutations=199)
    planted = np.r_[np.zeros(30, bool), np.ones(10, bool)]
    auc = stats.mannwhitneyu(check.scores[planted], check.scores[~planted]).statistic / 300
    assert check.p_value <= 0.01 and auc > 0.9


def test_categorical_ks_and_holm_against_references():
    ref = ["blobs"] * 150 + ["stripes"] * 150
    check = T.categorical_test(ref, ["blobs"] * 8 + ["stripes"] * 32, "class-balance")
    assert check.p_value == pytest.approx(0.001) and check.detail["new_counts"] == [8, 32]
    table = [[150, 150], [8, 32]]
    assert check.statistic == pytest.approx(stats.chi2_contingency(table, correction=False)[0])
    formats = T.categorical_test(["JPEG"] * 100 + ["PNG"] * 100, ["JPEG"] * 10 + ["WEBP"] * 2, "f")
    assert formats.detail["unseen"] == ["WEBP"]
    rng = np.random.default_rng(9)
    x, y = rng.integers(0, 10, 200), rng.integers(0, 12, 40)
    assert T.ks_test(x, y, "short-side").statistic == pytest.approx(stats.ks_2samp(x, y).statistic)
    checks = [
        T.Check(f"c{i}", "property", p_value=p) for i, p in enumerate([0.01, 0.04, 0.03, 0.005])
    ]
    T.holm(checks, 0.05)
    assert [c.p_adjusted for c in checks] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [c.flagged for c in checks] == [True, False, False, True]


def test_too_few_and_constant_checks_stay_out_of_the_family():
    from inception_retrain.evaluation.drift import mmd_test

    rng = np.random.default_rng(4)
    small = mmd_test(relu_features(rng, 100), relu_features(rng, 9))
    assert small.status == T.TOO_FEW and small.p_value is None and "too few" in small.message
    constant = T.categorical_test(["RGB"] * 30, ["RGB"] * 12, "mode")
    big = mmd_test(relu_features(rng, 100), relu_features(rng, 40, shift=2.0))
    T.holm([small, constant, big], 0.05)
    assert constant.status == T.CONSTANT and not constant.flagged
    assert big.p_adjusted == big.p_value and big.flagged  # a family of one


def test_brightness_is_the_exact_mean_luma_of_the_decoded_image():
    from inception_retrain.data.images import LUMA, brightness

    rgb = np.random.default_rng(10).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    exact = float((rgb.astype(float) @ np.asarray(LUMA)).mean())
    assert brightness(Image.fromarray(rgb)) == pytest.approx(exact, abs=1e-9)
    assert brightness(Image.fromarray(rgb // 2)) == pytest.approx(exact / 2, abs=0.6)


# --- the manifest --------------------------------------------------------------------------


def test_the_manifest_records_mode_brightness_and_the_source_folder(tmp_path):
    from inception_retrain.config import RetrainConfig
    from inception_retrain.data.ingest import ingest
    from inception_retrain.data.manifest import read_properties

    data = tmp_path / "photos"
    write_images(data / "blobs" / "phone", "blobs", range(3))
    write_images(data / "blobs" / "phone" / "2024", "blobs", range(3, 5), "dim")
    write_images(data / "stripes", "stripes", range(4))
    Image.new("L", (64, 48), 200).save(data / "stripes" / "grey.png")
    config = RetrainConfig(data=str(data), workdir=tmp_path / "w", split_fractions=(0.5, 0, 0.5))
    manifest = ingest(config.ingest, tmp_path / "run")

    rows = read_properties(manifest.path)
    by_name = {Path(u).name: k for k, u in enumerate(rows.rows.uris)}
    assert rows.version == 3
    assert {rows.source[k] for n, k in by_name.items() if "blobs" in n} == {"phone"}
    assert rows.source[by_name["grey.png"]] == "photos"  # directly in its class folder
    assert rows.mode[by_name["grey.png"]] == "L"
    assert rows.brightness[by_name["grey.png"]] == pytest.approx(200.0)
    dim = [rows.brightness[k] for n, k in by_name.items() if n.startswith("dim")]
    bright = [rows.brightness[k] for n, k in by_name.items() if n.startswith("demo-blobs")]
    assert max(dim) < min(bright)


def test_an_old_manifest_is_read_clearly_and_another_version_refused(tmp_path):
    from inception_retrain.data.manifest import read_image_rows, read_properties
    from inception_retrain.plumbing.errors import DataError
    from inception_retrain.plumbing.schemas import parquet_metadata

    old = pa.table(
        {
            "content_id": ["a" * 64],
            "uri": ["/x/a.png"],
            "label": ["blobs"],
            "label_index": pa.array([0], pa.int32()),
            "split": ["train"],
            "width": pa.array([150], pa.int32()),
            "height": pa.array([120], pa.int32()),
            "format": ["PNG"],
            "status": ["ok"],
            "reason": [""],
        }
    )
    path = tmp_path / "manifest.parquet"
    pq.write_table(old.replace_schema_metadata(parquet_metadata("manifest", 2, {})), path)
    rows = read_properties(path)
    assert rows.version == 2 and rows.width == [150] and rows.mode == [None]
    assert not rows.has("brightness") and rows.has("format")
    assert read_image_rows(path).labels == ["blobs"]
    pq.write_table(old.replace_schema_metadata(parquet_metadata("manifest", 9, {})), path)
    with pytest.raises(DataError, match="not a manifest file of schema version 3 .*v9"):
        read_properties(path)


# --- known answers on real images and features ---------------------------------------------


def _config(data: Path, work: Path, **overrides):
    from inception_retrain.config import RetrainConfig

    return RetrainConfig(
        data=str(data), workdir=work, weights="random:0", image_size=75, **overrides
    )


def _grown(root: Path, name: str, base: Path, look: str | None, indices=range(100, 120)) -> Path:
    folder = root / name
    shutil.copytree(base, folder)
    if look:
        for class_name in CLASSES:
            write_images(folder / class_name, class_name, indices, look, name=f"new-{look}")
    return folder


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """A reference run and three grown runs, each validated, drift-tested and reported."""
    from types import SimpleNamespace

    from inception_retrain.data.ingest import ingest
    from inception_retrain.evaluation.data_report import write_data_report
    from inception_retrain.evaluation.drift import check_drift
    from inception_retrain.features.extraction import extract_features
    from inception_retrain.runs.run_folder import new_run_dir

    root = tmp_path_factory.mktemp("data-checks")
    work = root / "work"
    base = root / "base"
    for class_name in CLASSES:
        write_images(base / class_name, class_name, range(40))
    config = _config(base, work)
    run_dir = new_run_dir(work)
    manifest = ingest(config.ingest, run_dir)
    cache = extract_features(manifest, config.extraction, run_dir)
    reference = DataReference(
        run_dir=run_dir,
        manifest_path=manifest.path,
        backbone_fingerprint=cache.backbone_fingerprint,
        role="previous-run",
    )
    spec = config.data_check_spec
    runs = {}
    for name, look in (("same", "demo"), ("dim", "dim"), ("texture", "checker")):
        data = _grown(root, name, base, look)
        config = _config(data, work)
        run_dir = new_run_dir(work)
        manifest = ingest(config.ingest, run_dir)
        cache = extract_features(manifest, config.extraction, run_dir)
        validation = validate_data(manifest, reference, spec, run_dir)
        drift = check_drift(manifest, cache, validation, spec, run_dir)
        report = write_data_report(manifest, validation, drift, spec, run_dir)
        document = json.loads(report.json_path.read_text())
        runs[name] = SimpleNamespace(
            run_dir=run_dir,
            manifest=manifest,
            cache=cache,
            report=report,
            document=document,
            flagged={c["name"] for c in document["checks"] if c["flagged"]},
            computed=cache.computed,
        )
    return SimpleNamespace(root=root, work=work, base=base, reference=reference, runs=runs)


def test_new_images_from_the_same_generator_are_not_flagged(checked):
    same = checked.runs["same"]
    assert same.computed == 40  # only the new images went through the backbone
    assert same.document["n_new"] == 40 and same.document["n_reference"] > 50
    tested = {c["name"] for c in same.document["checks"] if c["status"] == "tested"}
    assert {"features:all", "features:blobs", "features:stripes", "brightness"} <= tested
    assert same.flagged == set() and not same.report.blocked
    assert same.report.summary["drift"] == "ok"


def test_new_images_at_half_brightness_are_flagged(checked):
    dim = checked.runs["dim"]
    assert {"features:all", "features:blobs", "features:stripes", "brightness"} <= dim.flagged
    assert dim.report.summary["drift"] == "flagged" and not dim.report.blocked  # warn
    brightness = next(c for c in dim.document["checks"] if c["name"] == "brightness")
    assert brightness["detail"]["new_median"] < 0.6 * brightness["detail"]["reference_median"]
    shifted = dim.document["most_shifted"]
    assert shifted and all("new-dim" in Path(s["uri"]).name for s in shifted)


def test_new_images_of_another_texture_are_flagged(checked):
    texture = checked.runs["texture"]
    assert "features:all" in texture.flagged
    assert texture.report.summary["drift"] == "flagged"


def test_a_blocking_severity_blocks_with_one_line(checked, tmp_path):
    from inception_retrain.evaluation.data_report import write_data_report
    from inception_retrain.evaluation.drift import check_drift

    dim = checked.runs["dim"]
    spec = DataCheckSpec(contract=DataContract(features="block"))
    run_dir = tmp_path  # the checks again, written beside the run (its report stays)
    validation = validate_data(dim.manifest, checked.reference, spec, run_dir)
    drift = check_drift(dim.manifest, dim.cache, validation, spec, run_dir)
    report = write_data_report(dim.manifest, validation, drift, spec, run_dir)
    assert report.blocked and report.reason.startswith("features:all: flagged (p=0.001")
    assert "\n" not in report.reason
    document = json.loads(report.json_path.read_text())
    blocking = {c["name"] for c in document["checks"] if c["blocking"]}
    assert blocking == {"features:all", "features:blobs", "features:stripes"}  # not brightness


def test_every_check_of_the_json_report_says_what_it_found(checked):
    document = checked.runs["dim"].document
    assert document["schema"] == "inception-retrain/data-report"
    for check in document["checks"]:
        assert {"name", "statistic", "p_value", "flagged", "blocking"} <= set(check)
        assert isinstance(check["flagged"], bool) and isinstance(check["blocking"], bool)
        if check["kind"] == "rule":
            assert check["p_value"] is None
    names = [c["name"] for c in document["checks"]]
    assert names[:4] == ["class-missing", "class-added", "class-size", "label-conflict"]
    assert document["family"] == [
        c["name"] for c in document["checks"] if c["status"] == "tested" and c["kind"] != "rule"
    ]


def test_features_of_another_backbone_are_not_comparable(checked, tmp_path):
    from inception_retrain.evaluation.drift import check_drift, read_drift

    same = checked.runs["same"]
    other = checked.reference.model_copy(update={"backbone_fingerprint": "f" * 16})
    spec = DataCheckSpec()
    validation = validate_data(same.manifest, other, spec, tmp_path)
    drift = check_drift(same.manifest, same.cache, validation, spec, tmp_path)
    _, checks = read_drift(drift.json_path)
    assert not drift.comparable and drift.note.startswith("not comparable: previous run")
    assert {c.status for c in checks} == {T.NOT_COMPARABLE}
    assert all(c.p_value is None and not c.flagged for c in checks)


def test_a_small_batch_is_too_few_to_test(checked, tmp_path):
    from inception_retrain.evaluation.drift import check_drift, read_drift

    dim = checked.runs["dim"]
    spec = DataCheckSpec(min_new=21)  # the dim run has 20 new images per class
    validation = validate_data(dim.manifest, checked.reference, spec, tmp_path)
    drift = check_drift(dim.manifest, dim.cache, validation, spec, tmp_path)
    _, checks = read_drift(drift.json_path)
    statuses = {c.name: c.status for c in checks}
    assert statuses == {
        "features:all": "tested",
        "features:blobs": "too-few",
        "features:stripes": "too-few",
    }
    blobs = next(c for c in checks if c.name == "features:blobs")
    assert blobs.p_value is None and not blobs.flagged
    assert (
        blobs.message.startswith("too few to test (20 new, ") and "needs 21 and 20" in blobs.message
    )


def test_a_class_emptied_in_a_three_class_folder_blocks_the_run(tmp_path):
    """The reference had three classes; the new folder's third is empty (its folder is still
    there): the contract blocks, naming the class. A class below the minimum blocks too."""
    from inception_retrain.data.ingest import ingest

    data = tmp_path / "three"
    for class_name, look in (("blobs", "demo"), ("stripes", "demo"), ("rings", "rings")):
        write_images(data / class_name, "blobs" if look == "rings" else class_name, range(12), look)
    config = _config(data, tmp_path / "w")
    reference_manifest = ingest(config.ingest, tmp_path / "reference")
    reference = DataReference(
        run_dir=tmp_path / "reference",
        manifest_path=reference_manifest.path,
        backbone_fingerprint=None,
        role="previous-run",
    )
    for image in (data / "rings").iterdir():
        image.unlink()
    for image in sorted((data / "stripes").iterdir())[:5]:
        image.unlink()
    manifest = ingest(config.ingest, tmp_path / "run")
    validation = validate_data(manifest, reference, config.data_check_spec, tmp_path / "run")

    assert manifest.class_names == ["blobs", "stripes"]
    assert validation.blocked
    assert validation.blocking == [
        "class-missing: class 'rings' of the reference has no valid image (it had 12)",
        "class-size: class 'stripes' has 7 valid images, fewer than 10",
    ]
    assert validation.summary()["anomalies"] == 2 and validation.summary()["blocked"]
    relaxed = DataCheckSpec(contract=DataContract(class_missing="warn", class_size="off"))
    assert not validate_data(manifest, reference, relaxed, tmp_path / "run").blocked


def test_labels_that_changed_since_the_reference_are_flagged_not_blocking(checked, tmp_path):
    from inception_retrain.data.ingest import ingest

    data = tmp_path / "moved"
    shutil.copytree(checked.base, data)
    for image in sorted((data / "blobs").iterdir())[:3]:
        image.rename(data / "stripes" / image.name)
    manifest = ingest(_config(data, checked.work).ingest, tmp_path / "run")
    validation = validate_data(manifest, checked.reference, DataCheckSpec(), tmp_path / "run")
    assert validation.flagged == ["label-conflict"] and not validation.blocked
    document = json.loads(validation.json_path.read_text())
    conflict = next(c for c in document["checks"] if c["name"] == "label-conflict")
    assert conflict["statistic"] == 3 and conflict["message"].startswith("3 images labelled")
    assert {c["now"] for c in conflict["detail"]["conflicts"]} == {"stripes"}


def test_the_reference_is_the_champions_run_else_the_last_accepted_run(tmp_path):
    from inception_retrain.plumbing.schemas import write_document
    from inception_retrain.registry import versions
    from inception_retrain.runs import run_folder
    from inception_retrain.runs.data_reference import find_reference

    work = tmp_path / "w"
    runs = [work / "runs" / f"2026120{i}-000000-aaaaaa" for i in range(1, 5)]
    for run in runs:
        run.mkdir(parents=True)
        (run / "manifest.parquet").write_bytes(b"")
    run_folder.write_status(runs[0], "completed")  # from before data checks: accepted
    run_folder.write_status(runs[1], "failed", data_checks={"blocked": True})
    run_folder.write_status(runs[2], "failed", data_checks={"blocked": False})
    assert find_reference(work, runs[3]).run_dir == runs[2]
    assert find_reference(work, runs[2]).run_dir == runs[0]
    assert find_reference(work, runs[0]) is None

    version = work / "models" / "v0001-20261201T000000Z"
    version.mkdir(parents=True)
    for name in versions.REQUIRED_FILES:
        (version / name).write_text("{}")
    lineage = {"run_dir": str(runs[0]), "backbone_fingerprint": "abc"}
    write_document(version / "metrics.json", "model-metrics", 1, {"lineage": lineage})
    versions.write_champion(work / "models", {"version": version.name})
    champion = find_reference(work, runs[3])
    assert (champion.role, champion.run_dir, champion.backbone_fingerprint) == (
        "champion",
        runs[0],
        "abc",
    )
    assert champion.describe() == f"champion {version.name} (run {runs[0].name})"
    shutil.rmtree(runs[0])
    fallback = find_reference(work, runs[3])
    assert fallback.run_dir == runs[2] and "run folder" in fallback.note


# --- the report in a browser ---------------------------------------------------------------


def test_data_report_html_opens_offline_with_its_plots(checked):
    """data_report.html of the half-brightness run, in headless Chromium: the blocked/
    outcome line, the checks table, every plot loaded, no request leaving the machine."""
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright missing")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).is_file():
        pytest.skip("chromium not installed (apt-get install chromium)")
    report = checked.runs["dim"].report.html_path
    output = Path(__file__).resolve().parent.parent / "test-output"
    output.mkdir(exist_ok=True)
    flags = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=flags)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.set_default_timeout(90_000)  # a busy 2-core machine
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(report.as_uri(), wait_until="load")
        assert page.locator("h1").first.inner_text().strip() == "Data report"
        flagged = len(checked.runs["dim"].flagged)
        assert f"{flagged} checks flagged: " in page.locator("#outcome").inner_text()
        assert page.locator("#drift-state").inner_text().startswith("flagged")
        rows = page.locator("#checks tbody tr")
        assert rows.count() == len(checked.runs["dim"].document["checks"])
        brightness = page.locator("#checks tr", has=page.locator("td", has_text="brightness"))
        assert "yes" in brightness.first.inner_text()
        images = page.evaluate(
            "[...document.images].map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0}))"
        )
        assert [i["alt"] for i in images] == [
            "Class balance, reference against new",
            "Image properties, reference against new",
            "Null distributions",
            "Most-shifted new images",
        ]
        assert all(i["ok"] for i in images), images
        assert not [u for u in requests if not u.startswith(("file://", "data:"))]
        page.screenshot(path=output / "data_report.png", full_page=True)
        browser.close()
