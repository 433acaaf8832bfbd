"""`dask scheduler` and `dask worker` processes on 127.0.0.1, as a user starts them.

    with DaskProcesses(tmp_path, env) as cluster:
        cluster.scheduler()
        cluster.worker("w1")                          # a nanny, as `dask worker` defaults to
        cluster.worker("w2", nanny=False, preload=path)
        cluster.wait_for_workers(2)
        ...
        cluster.signal("scheduler", signal.SIGKILL)

Each process runs in its own session (a signal reaches a nanny's worker too); whatever is
left is killed at the end, resumed first if it was stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from prefect_fixtures import free_port, tail

BIN = Path(sys.executable).parent
WORKERS_TIMEOUT_S = 120


class DaskProcesses:
    def __init__(self, folder: Path, env: dict, address: str | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.address = address or f"tcp://127.0.0.1:{free_port()}"
        self.port = int(self.address.rsplit(":", 1)[1])
        self.processes: dict[str, subprocess.Popen] = {}

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def _start(self, name: str, command: list[str]) -> subprocess.Popen:
        with open(self.log(name), "ab") as out:
            self.processes[name] = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.folder,
                start_new_session=True,
            )
        return self.processes[name]

    def scheduler(self) -> subprocess.Popen:
        command = [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port"]
        return self._start("scheduler", [*command, str(self.port), "--no-dashboard"])

    def worker(self, name: str, nanny: bool = True, preload: Path | None = None):
        command = [str(BIN / "dask"), "worker", self.address, "--nthreads", "1", "--name", name]
        command += ["--no-dashboard", "--host", "127.0.0.1"]
        if not nanny:
            command.append("--no-nanny")
        if preload is not None:
            command += ["--preload", str(preload)]
        return self._start(name, command)

    def wait_for_workers(self, n: int) -> dict:
        """Wait (on the scheduler's word, not a sleep) until `n` workers have registered."""
        from distributed import Client

        try:
            with Client(self.address, timeout=WORKERS_TIMEOUT_S, set_as_default=False) as client:
                client.wait_for_workers(n, timeout=WORKERS_TIMEOUT_S)
                return dict(client.scheduler_info(n_workers=-1)["workers"])
        except Exception as error:
            logs = "\n".join(f"--- {name}\n{tail(self.log(name))}" for name in self.processes)
            raise AssertionError(f"{n} workers did not register: {error}\n{logs}") from None

    def signal(self, name: str, sig: int = signal.SIGKILL) -> None:
        os.killpg(self.processes[name].pid, sig)

    def close(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGCONT)
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                process.wait(timeout=30)

    def __enter__(self) -> DaskProcesses:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
