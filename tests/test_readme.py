"""The README gets a newcomer from a fresh clone to the reports, the Prefect UI and TensorBoard:
its contents list resolves, every command it shows can be typed as shown (from `.venv/bin/`
or a make target that exists), and the schedule it states is the one the code serves."""

from __future__ import annotations

import re
from pathlib import Path

from inception_retrain.config import NIGHTLY_CRON, NIGHTLY_TIMEZONE

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
MAKEFILE = (REPO / "Makefile").read_text()
PROGRAMS_IN_VENV = ("inception-retrain", "prefect", "dask", "tensorboard", "python", "pytest")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def shell_lines(text: str) -> list[str]:
    """The commands of the ```bash blocks (continuation lines and comments left out)."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        previous = ""
        for line in block.splitlines():
            if line.strip() and not line.startswith(("#", " ")) and not previous.endswith("\\"):
                lines.append(line)
            previous = line.rstrip()
    return lines


def test_the_contents_list_resolves_to_headings():
    headings = {slug(h) for h in re.findall(r"^#{2,3} (.+)$", README, flags=re.M)}
    contents = README[README.index("**Contents:**") : README.index("## Quick start")]
    anchors = re.findall(r"\]\(#([^)]+)\)", contents)
    assert len(anchors) >= 8
    assert not [a for a in anchors if a not in headings]


def test_the_quick_start_is_two_make_targets_that_exist():
    quick = README[README.index("## Quick start") :]
    first_block = shell_lines(quick[: quick.index("```", quick.index("```bash") + 7) + 3])
    assert [line.split("#")[0].strip() for line in first_block] == ["make demo", "make test"]
    for target in ("demo", "test", "ui", "serve", "tensorboard"):
        assert re.search(rf"^{target}:", MAKEFILE, flags=re.M), target


def test_every_command_can_be_typed_as_shown_from_a_fresh_clone():
    """A program the project installs is called from .venv/bin/ (it is not on PATH)."""
    user_guide = README[: README.index("## Docker deployment")]
    bare = [
        line
        for line in shell_lines(user_guide)
        if re.match(rf"^(\w+=\S+ )*({'|'.join(map(re.escape, PROGRAMS_IN_VENV))})\b", line)
    ]
    assert not bare


def test_the_schedule_the_readme_states_is_the_one_served():
    row = next(line for line in README.splitlines() if line.startswith("| `retrain/nightly-"))
    assert f"cron `{NIGHTLY_CRON}`" in row and f"timezone {NIGHTLY_TIMEZONE}" in row
    assert "make ui" in README and "make tensorboard" in README
