"""Every file the project's texts name exists: a reader sent to ``notes/contracts.md`` (a folder
that never existed) or to a moved script is lost (issue 11)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: A path from the repository's root, as the docs, comments and configuration write them.
REFERENCE = re.compile(
    r"(?<![\w./-])((?:docs|config|scripts|tests|dialer|ivr|sounds|notes)/[\w./-]*"
    r"\.(?:md|py|yaml|conf|sh|toml|cfg|json|service))"
)
#: Files that name paths that are not meant to exist in the checkout (installed data under
#: ``dialer/_data`` of a wheel, made-up paths fed to a checker).
NOT_REFERENCES = ("tests/test_install.py", "tests/test_sizes.py", "tests/test_references.py")
TEXT = (".py", ".md", ".yaml", ".yml", ".conf", ".cfg", ".toml", ".sh", ".service")


def dead_references(root: str) -> dict[str, list[str]]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    dead: dict[str, list[str]] = {}
    for name in listed:
        if not name.endswith(TEXT) or name in NOT_REFERENCES:
            continue
        path = PROJECT_ROOT / name
        if not path.is_file():
            continue
        for match in REFERENCE.finditer(path.read_text(encoding="utf-8", errors="replace")):
            ref = match.group(1).rstrip(".")
            if not (PROJECT_ROOT / ref).exists():
                dead.setdefault(ref, []).append(name)
    return dead


def test_every_named_file_exists() -> None:
    assert dead_references(str(PROJECT_ROOT)) == {}


def test_the_scan_finds_a_dead_reference() -> None:
    text = "see notes/contracts.md and docs/contracts.md; not xnotes/a.md"
    assert [m.group(1) for m in REFERENCE.finditer(text)] == [
        "notes/contracts.md",
        "docs/contracts.md",
    ]
