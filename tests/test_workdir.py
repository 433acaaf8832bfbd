"""One run per workdir, killed runs told apart by locks, leftovers, retention commands.

Real processes hold the real locks here (a child Python process plays a run: it takes the
workdir's lock and its run folder's lock, then holds, finishes or SIGKILLs itself), so
"alive" and "killed" are what the flocks say. The whole CLI runs in tests/test_lifecycle.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from inception_retrain.plumbing.errors import BusyError
from inception_retrain.plumbing.schemas import write_document
from inception_retrain.runs import run_folder, workdir

CLI = Path(sys.executable).parent / "inception-retrain"

RUN = """
import os, signal, sys
from pathlib import Path
from inception_retrain.features import feature_cache
from inception_retrain.runs import run_folder
from inception_retrain.runs import workdir

work, mode = sys.argv[1], sys.argv[2]
if mode == "extract":  # an extraction writing a cache, outside any run
    with feature_cache.writing(Path(work) / "cache" / "busy"):
        print("ready", flush=True)
        sys.stdin.readline()
    sys.exit()
with workdir.run_lock(work):
    run_dir = run_folder.new_run_dir(work)
    with run_folder.running(run_dir):
        run_folder.write_status(run_dir, "running")
        (run_dir / "checkpoints").mkdir()
        (run_dir / "checkpoints" / "epoch-0001.npz").write_bytes(b"x" * 1000)
        (run_dir / ".history.json.x1y2.tmp").write_text("{")
        print(run_dir, flush=True)
        if mode == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        sys.stdin.readline()  # hold until told
        run_folder.write_status(run_dir, "completed")
"""


def start_run(work: Path, mode: str) -> tuple[subprocess.Popen, str]:
    """A child that plays a run in `work` ("hold", "die" or "extract"); (process, first line)."""
    process = subprocess.Popen(
        [sys.executable, "-c", RUN, str(work), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline().strip()
    assert line, process.stderr.read()
    return process, line


def finish(process: subprocess.Popen) -> None:
    process.stdin.write("\n")
    process.stdin.flush()
    assert process.wait(timeout=60) == 0, process.stderr.read()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# --- one run per workdir -----------------------------------------------------------------------


def test_a_second_run_refuses_without_waiting_or_waits_saying_for_whom(tmp_path):
    work = tmp_path / "work"
    holder, line = start_run(work, "hold")
    run_id = Path(line).name
    try:
        with pytest.raises(BusyError) as busy, workdir.run_lock(work, wait=False):
            pass
        assert str(busy.value).startswith(f"run {run_id} (pid {holder.pid}, started ")
        assert str(work) in str(busy.value)

        said, done = [], threading.Event()

        def second_run():
            with workdir.run_lock(work, on_wait=said.append):
                done.set()

        waiter = threading.Thread(target=second_run)
        waiter.start()
        deadline = time.monotonic() + 60
        while not said:  # it says why it waits before it waits
            assert time.monotonic() < deadline and waiter.is_alive(), "the second run never waited"
            time.sleep(0.05)
        assert not done.is_set()  # still waiting: the holder has not finished
        assert said == [
            f"waiting for run {run_id} (pid {holder.pid}, started "
            f"{run_folder.read_status(Path(line))['started']}) to finish: it is "
            f"using the workdir {work}"
        ]
    finally:
        finish(holder)
    waiter.join(timeout=30)
    assert done.is_set()
    assert run_folder.read_status(Path(line))["state"] == "completed"


def test_the_run_lock_is_reentrant_in_one_process(tmp_path):
    work = tmp_path / "work"
    assert not workdir.holds_run_lock(work)
    with workdir.run_lock(work, wait=False), workdir.run_lock(work, wait=False):
        assert workdir.holds_run_lock(work)  # the CLI's lock, then the flow's
    assert not workdir.holds_run_lock(work)
    with pytest.raises(RuntimeError, match="run lock"):
        workdir.recover(work)


# --- killed runs -------------------------------------------------------------------------------


def test_a_killed_run_is_recognised_and_marked_killed_by_the_next_look(tmp_path):
    work = tmp_path / "work"
    dead, line = start_run(work, "die")
    assert dead.wait(timeout=60) == -signal.SIGKILL
    killed = Path(line)
    assert run_folder.read_status(killed)["state"] == "running"  # as the process left it
    assert not run_folder.is_alive(killed)

    live, line = start_run(work, "hold")
    try:
        alive = Path(line)
        assert run_folder.run_state(alive)["state"] == "running"  # its lock is held
        status = run_folder.run_state(killed)
        assert status["state"] == "killed"
        assert status["pid"] == dead.pid and status["message"] == run_folder.KILLED_MESSAGE
        assert run_folder.read_status(killed)["state"] == "killed"  # written down
        failure = (killed / "failure.json").read_text()
        assert '"state": "Killed"' in failure
        assert "killed" in (killed / "failure.md").read_text()
        listed = cli("runs", "ls", "--workdir", str(work), cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        rows = {line.split()[0]: line.split()[1] for line in listed.stdout.splitlines()[1:]}
        assert rows == {killed.name: "killed", alive.name: "running"}
    finally:
        finish(live)
    assert run_folder.run_state(alive)["state"] == "completed"
    assert run_folder.run_state(killed)["state"] == "killed"


# --- leftovers ---------------------------------------------------------------------------------


def test_recover_removes_what_dead_processes_left_and_nothing_a_live_one_writes(tmp_path):
    work = tmp_path / "work"
    dead, line = start_run(work, "die")
    dead.wait(timeout=60)
    killed = Path(line)
    completed, line = start_run(work, "hold")
    finish(completed)
    finished = Path(line)
    (finished / ".dropout_impact.json.a1b2.tmp").write_text("{")  # a rebuild may write here

    models = work / "models"
    staging = models / ".staging-a1b2c3"
    staging.mkdir(parents=True)
    (staging / "model.keras").write_bytes(b"m" * 5000)
    pointer_temp = models / ".champion.json.q1w2.tmp"
    pointer_temp.write_text("{")
    cache = work / "cache"
    trash = cache / ".trash-0123456789abcdef-a1b2c3"
    trash.mkdir(parents=True)
    (trash / "part-00001.parquet").write_bytes(b"p" * 100)
    idle_part = cache / "idle" / ".part-00002.parquet.z9.tmp"
    idle_part.parent.mkdir()
    idle_part.write_bytes(b"t" * 10)
    extraction, _ = start_run(work, "extract")  # holds cache/busy's write lock
    busy_part = cache / "busy" / ".part-00003.parquet.y8.tmp"
    busy_part.write_bytes(b"t" * 10)
    try:
        with workdir.run_lock(work, wait=False):
            removed = dict(workdir.recover(work))
    finally:
        finish(extraction)

    assert set(removed) == {
        killed / "checkpoints",
        killed / ".history.json.x1y2.tmp",
        staging,
        pointer_temp,
        trash,
        idle_part,
    }
    assert removed[staging] == 5000 and removed[killed / "checkpoints"] == 1000
    assert not any(path.exists() for path in removed)
    assert busy_part.exists()  # an extraction is writing that cache
    assert (finished / ".dropout_impact.json.a1b2.tmp").exists()  # not a killed run
    assert (finished / "checkpoints").exists()
    assert run_folder.read_status(killed)["state"] == "killed"
    assert (models / ".lock").exists() and (work / workdir.LOCK_FILE).exists()


# --- retention commands ------------------------------------------------------------------------


def fake_version(models: Path, number: int, size: int) -> str:
    from inception_retrain.registry.versions import REQUIRED_FILES

    name = f"v{number:04d}-20260101T00000{number}Z"
    for file in REQUIRED_FILES:
        (models / name).mkdir(parents=True, exist_ok=True)
        (models / name / file).write_bytes(b"v" * size)
    return name


def test_models_prune_command_keeps_the_champion_and_the_newest(tmp_path):
    from inception_retrain.registry.versions import list_versions, write_champion

    models = tmp_path / "work" / "models"
    names = [fake_version(models, n, 250_000) for n in range(1, 6)]
    write_champion(models, {"version": names[0]})

    listed = cli("models", "ls", "--workdir", str(tmp_path / "work"), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split() == [names[0], "yes", "-", "-", "-", "-", "1.0"]

    dry = cli("models", "prune", "--keep", "2", "--dry-run", "--workdir", "work", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"would remove {names[1]} (1.0 MB)",
        f"would remove {names[2]} (1.0 MB)",
        "would remove 2 version(s), 2.0 MB",
    ]
    assert list_versions(models) == names
    done = cli("models", "prune", "--keep", "2", "--workdir", "work", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "removed 2 version(s), 2.0 MB"
    assert list_versions(models) == [names[0], names[3], names[4]]

    refused = cli("models", "prune", "--workdir", "work", cwd=tmp_path)  # --keep is required
    assert refused.returncode == 2 and "--keep" in refused.stderr


def write_cache(work: Path, fingerprint: str, last_used: str) -> Path:
    from inception_retrain.features.feature_cache import (
        BACKBONE_JSON,
        BACKBONE_KIND,
        BACKBONE_VERSION,
    )

    cache_dir = work / "cache" / fingerprint
    info = {"fingerprint": fingerprint, "inputs": {}, "created": last_used, "last_used": last_used}
    write_document(cache_dir / BACKBONE_JSON, BACKBONE_KIND, BACKBONE_VERSION, info)
    return cache_dir


def write_sweep(work: Path, name: str, fingerprint: str | None, results: int) -> Path:
    from inception_retrain.plumbing.files import write_json

    folder = work / "sweeps" / name
    folder.mkdir(parents=True)
    if fingerprint is not None:
        write_json(folder / "key.json", {"backbone_fingerprint": fingerprint, "code_version": 1})
    for i in range(results):
        write_json(folder / f"after_dense2-0.5-seed{i}-abc.json", {"result": {"history": {}}})
    return folder


def test_cache_prune_also_removes_the_sweep_results_of_caches_that_are_gone(tmp_path):
    work = tmp_path / "work"
    old = write_cache(work, "aaaaaaaaaaaaaaaa", "2026-01-01T00:00:00+00:00")
    new = write_cache(work, "bbbbbbbbbbbbbbbb", "2026-02-01T00:00:00+00:00")
    of_old = write_sweep(work, "1111111111111111", old.name, 3)
    of_new = write_sweep(work, "2222222222222222", new.name, 2)
    orphan = write_sweep(work, "3333333333333333", "cccccccccccccccc", 1)  # cache long gone
    being_made = write_sweep(work, "4444444444444444", None, 0)  # key.json not written yet

    dry = cli("cache", "prune", "--workdir", str(work), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert f"would remove sweep results {of_old.name} (3 trainings, cache {old.name})" in dry.stdout
    assert f"would remove sweep results {orphan.name} (1 trainings" in dry.stdout
    assert "would remove 2 sweep result folder(s)" in dry.stdout
    assert all(p.is_dir() for p in (old, of_old, orphan))

    done = cli("cache", "prune", "--workdir", str(work), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "removed 1 cache(s)" in done.stdout and "removed 2 sweep result folder(s)" in done.stdout
    assert not old.exists() and not of_old.exists() and not orphan.exists()
    assert new.is_dir() and of_new.is_dir() and being_made.is_dir()
    assert not list((work / "sweeps").glob(".trash-*"))
