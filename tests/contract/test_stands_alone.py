"""The repository stands alone: no tracked file points at a design document or a folder outside it.

The rules the code keeps live in docs/contract.md; a citation of an outside document sends a reader (or a
reviewer) somewhere a fresh clone does not have. Codat's own OpenAPI document is vendored under
tests/fixtures/codat/ and is Codat's text, so it is not searched.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Spelled in pieces so this file does not match itself.
OUTSIDE_REFERENCES = ("DESIGN" + " §", "DESIGN" + ".md", ".." + "/shared")
NOT_SEARCHED = ("tests/fixtures/codat/",)


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: no list of tracked files")
    listing = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z"], check=True, capture_output=True, text=True
    )
    return [name for name in listing.stdout.split("\0") if name and not name.startswith(NOT_SEARCHED)]


def outside_references(relative: str, root: Path = REPO) -> list[str]:
    """`path:line: text` for every line of one file that cites an outside document."""
    path = root / relative
    if not path.is_file():  # deleted in the work tree, not yet committed
        return []
    text = path.read_bytes().decode("utf-8", errors="replace")
    return [
        f"{relative}:{number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), start=1)
        if any(needle in line for needle in OUTSIDE_REFERENCES)
    ]


def test_the_search_sees_the_files_it_should() -> None:
    files = tracked_files()
    assert "docs/contract.md" in files
    assert "README.md" in files
    assert not any(name.startswith(NOT_SEARCHED) for name in files)


def test_a_planted_citation_is_found(tmp_path: Path) -> None:
    # The search itself works: a line citing the design document is reported with its number.
    (tmp_path / "notes.md").write_text("clean line\nsee " + OUTSIDE_REFERENCES[0] + "4\n", encoding="utf-8")
    assert outside_references("notes.md", root=tmp_path) == [f"notes.md:2: see {OUTSIDE_REFERENCES[0]}4"]


def test_no_tracked_file_cites_an_outside_document() -> None:
    found = [hit for relative in tracked_files() for hit in outside_references(relative)]
    assert not found, "cite docs/contract.md instead:\n" + "\n".join(found)
