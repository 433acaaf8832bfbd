"""A real S3-compatible server for tests: moto's standalone server on a loopback port, and
endpoints that misbehave on purpose.

  * `MotoServer`      `moto_server` as a process in its own session; `kill()` and `start()`
                      again on the same port; with `record=True` moto's request recorder
                      logs every complete request, so `replay()` after a restart brings the
                      bucket back as the killed server left it (moto keeps no state
                      otherwise). The recorder logs a request only once its whole body has
                      arrived, as S3 stores an object only once it is complete.
  * `s3_env(server)`  points this process (and its children) at a server, with the standard
                      AWS variables, and forgets cached file systems before and after.
  * `refusing_port()` a free port nobody listens on: connections are refused at once.
  * `SilentListener`  accepts connections (the kernel does the handshake) and never answers.
  * `SynDropListener` a listener whose one-slot accept queue is full: the kernel drops
                      further SYNs, so a client hangs in connect, as behind a firewall.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from prefect_fixtures import free_port, tail

BIN = Path(sys.executable).parent
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
START_TIMEOUT_S = 60


def forget_file_systems() -> None:
    """Drop fsspec's cached S3 instances (they keep the endpoint they were made with)."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


class MotoServer:
    def __init__(self, folder: Path, *, record: bool = False, env: dict | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = self.folder / "moto.log"
        self.recording = self.folder / "moto-recording" if record else None
        self.env = dict(env or {})
        self.process: subprocess.Popen | None = None

    def start(self) -> MotoServer:
        env = {**os.environ, **CREDENTIALS, **self.env}
        if self.recording is not None:
            env.update(MOTO_ENABLE_RECORDING="1", MOTO_RECORDER_FILEPATH=str(self.recording))
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                assert self.process.poll() is None, tail(self.log)
                assert time.monotonic() < deadline, f"moto did not start:\n{tail(self.log)}"
                time.sleep(0.1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def replay(self) -> None:
        """Rebuild the killed server's state from its recording (see module docstring)."""
        import urllib.request

        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/recorder/replay-recording", method="POST", data=b""
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 200

    def client(self, **kwargs):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **kwargs)


@contextlib.contextmanager
def s3_env(server: MotoServer):
    """The standard AWS variables pointing at `server` for the block."""
    values = {**CREDENTIALS, "AWS_ENDPOINT_URL": server.endpoint}
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    forget_file_systems()
    try:
        yield
    finally:
        forget_file_systems()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def moto_with_bucket(folder: Path, bucket: str):
    """A moto server holding `bucket`, the AWS variables pointing at it, for the block."""
    server = MotoServer(folder).start()
    try:
        with s3_env(server):
            server.client().create_bucket(Bucket=bucket)
            yield server
    finally:
        server.kill()


def refusing_port() -> int:
    return free_port()


class SilentListener:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


class SynDropListener:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)  # one slot in the accept queue
        self.port = self.sock.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:  # the queue must be full: a second connection must hang in connect
            probe.connect(("127.0.0.1", self.port))
            raise RuntimeError("this kernel does not drop SYNs to a full queue")
        except TimeoutError:
            pass
        finally:
            probe.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.filler.close()
        self.sock.close()
