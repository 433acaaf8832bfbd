"""Progress reporting: a terminal bar (rate and ETA) plus, inside a Prefect run, a progress
artifact updated in place so the UI shows the same number."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


def _in_prefect_run() -> bool:
    try:
        from prefect.context import FlowRunContext, TaskRunContext
    except ImportError:  # pragma: no cover - prefect is a dependency
        return False
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


class Progress:
    """Count work done; `update(n)` advances the bar and (at most every `every_s`) the artifact.

    with Progress(total=1000, description="extract", unit="img") as progress:
        for batch in batches:
            progress.update(len(batch))
    """

    def __init__(self, total: int, description: str, unit: str = "it", every_s: float = 2.0):
        self.total = max(int(total), 0)
        self.done = 0
        self.description = description
        self._every_s = every_s
        self._last = 0.0
        self._bar = tqdm(
            total=self.total, desc=description, unit=unit, file=sys.stderr, dynamic_ncols=True
        )
        self._artifact_id = None
        if _in_prefect_run():
            from prefect.artifacts import create_progress_artifact

            self._artifact_id = create_progress_artifact(
                progress=0.0, description=f"{description}: 0/{self.total}"
            )

    def update(self, n: int = 1) -> None:
        self.done += n
        self._bar.update(n)
        now = time.monotonic()
        if self._artifact_id is not None and (now - self._last >= self._every_s):
            self._push()
            self._last = now

    def _push(self) -> None:
        from prefect.artifacts import update_progress_artifact

        percent = 100.0 * self.done / self.total if self.total else 100.0
        update_progress_artifact(
            artifact_id=self._artifact_id,
            progress=min(percent, 100.0),
            description=f"{self.description}: {self.done}/{self.total}",
        )

    def close(self) -> None:
        if self._artifact_id is not None:
            self._push()
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
