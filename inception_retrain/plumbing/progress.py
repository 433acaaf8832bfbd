"""`Progress`: counting work done, shown as a terminal bar with rate and ETA.

Whoever runs the core code can watch it too: `add_listener(factory)` registers a factory
`factory(description, total)` whose product gets `update(done, total)` (at most every
`every_s` seconds) and `close(done, total)`. The Prefect task layer registers one that keeps
a progress artifact in the UI up to date; the core knows nothing of Prefect.

    with Progress(total=1000, description="extract", unit="img") as progress:
        for batch in batches:
            progress.update(len(batch))
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

_LISTENERS: list[Callable[[str, int], Any]] = []


def add_listener(factory: Callable[[str, int], Any]) -> None:
    """Call `factory(description, total)` for every new Progress (idempotent per factory)."""
    if factory not in _LISTENERS:
        _LISTENERS.append(factory)


class Progress:
    """Count work done; `update(n)` advances the bar and (at most every `every_s`) listeners."""

    def __init__(self, total: int, description: str, unit: str = "it", every_s: float = 2.0):
        self.total = max(int(total), 0)
        self.done = 0
        self.description = description
        self._every_s = every_s
        self._last = 0.0
        self._bar = tqdm(
            total=self.total, desc=description, unit=unit, file=sys.stderr, dynamic_ncols=True
        )
        self._listeners = [listener for f in _LISTENERS if (listener := f(description, total))]

    def update(self, n: int = 1) -> None:
        self.done += n
        self._bar.update(n)
        now = time.monotonic()
        if self._listeners and now - self._last >= self._every_s:
            self._last = now
            for listener in self._listeners:
                listener.update(self.done, self.total)

    def close(self) -> None:
        for listener in self._listeners:
            listener.close(self.done, self.total)
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
