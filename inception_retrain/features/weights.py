"""Where the backbone's weights come from: the `--weights` string, parsed once.

* `imagenet`: Keras's ImageNet weights (downloaded once into the Keras cache);
* `random[:SEED]`: seeded random weights, for demos and tests only, always labelled RANDOM;
* anything else: a weights file (`.h5`, `.weights.h5` or `.keras`), a local path or a URI
  (`file://`, `s3://bucket/key`: `inception_retrain.plumbing.storage`; downloaded once per process).

  >>> source = parse_weights("random:3")
  >>> source.kind, source.seed, source.is_random
  ('random', 3, True)
  >>> source.description
  'RANDOM weights (seed 3), not pretrained: demo/test only'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from inception_retrain.plumbing import storage
from inception_retrain.plumbing.errors import ConfigError

IMAGENET = "imagenet"
_RANDOM = re.compile(r"^random(?::(\d+))?$")


@dataclass(frozen=True)
class WeightsSource:
    kind: Literal["imagenet", "file", "random"]
    seed: int | None = None  # random weights only
    path: Path | None = None  # local weights files only
    uri: str | None = None  # weights files at a remote URI (s3://...)

    @property
    def is_random(self) -> bool:
        return self.kind == "random"

    @property
    def description(self) -> str:
        """A label for reports; random weights are always marked RANDOM."""
        if self.kind == "random":
            return f"RANDOM weights (seed {self.seed}), not pretrained: demo/test only"
        if self.kind == "imagenet":
            return "ImageNet weights (Keras download)"
        return f"weights file {self.path.name if self.path else self.uri.rsplit('/', 1)[-1]}"


def parse_weights(text: str) -> WeightsSource:
    """Parse a `--weights` value (a file need not exist here; loading checks that)."""
    if text == IMAGENET:
        return WeightsSource("imagenet")
    if match := _RANDOM.match(text):
        return WeightsSource("random", seed=int(match.group(1) or 0))
    if text.startswith("random"):
        raise ConfigError(f"'{text}': random weights are 'random' or 'random:SEED'")
    if storage.looks_like_uri(text):
        where = storage.location(text)  # a StorageError (a ConfigError) names a bad scheme
        if isinstance(where, str):
            return WeightsSource("file", uri=where)
        return WeightsSource("file", path=where)
    return WeightsSource("file", path=Path(text).expanduser())
