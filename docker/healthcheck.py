"""Container health check for the inception-retrain image (Docker's HEALTHCHECK runs it).

`inception-retrain serve` is a long-running Prefect runner. With PREFECT_RUNNER_SERVER_ENABLE
set (the image sets it), the runner starts a small webserver on 127.0.0.1:8080 whose
`/health` answers 200 while the runner keeps polling the Prefect API for scheduled runs and
503 once it has missed polls. So "healthy" means exactly what matters for the nightly
retrain: the process is alive *and* it can reach the API it takes work from.

Any other command (`run`, `demo-data`, ...) is a one-shot job with nothing to probe: the check
passes while the process lives, and Docker's exit status tells the rest.

    python /opt/inception-retrain/healthcheck.py                  # exit 0: healthy, 1: not
    python /opt/inception-retrain/healthcheck.py --expect-runner  # probe even if PID 1 isn't serve
"""

import os
import sys
import urllib.request


def main_command_is_serve() -> bool:
    # PID 1 is the entrypoint (or docker-init in front of it with `--init`).
    with open("/proc/1/cmdline", "rb") as cmdline:
        arguments = cmdline.read().split(b"\0")
    return b"serve" in arguments


def runner_is_healthy() -> bool:
    port = os.environ.get("PREFECT_RUNNER_SERVER_PORT", "8080")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            return response.status == 200
    except OSError as error:  # connection refused, timeout, HTTP 503
        print(f"runner health endpoint: {error}", file=sys.stderr)
        return False


if __name__ == "__main__":
    expect_runner = "--expect-runner" in sys.argv[1:] or main_command_is_serve()
    sys.exit(0 if not expect_runner or runner_is_healthy() else 1)
