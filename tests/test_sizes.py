"""Sizes that keep the code reviewable: no function over 80 lines (migrations excepted: they
are declared tables), and no class over 300 lines in the dialer's orchestration (the floor,
the applications, and the telephony layer's core, AMI client and rows; the sans-I/O protocol
cores - tracker, AMI connection and framing - are tables and state machines, not orchestration).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_MAX = 80
CLASS_MAX = 300
#: Declared tables: migrations are one table definition after another.
NOT_FUNCTIONS = ("dialer/store/migrations/versions/",)
ORCHESTRATION = ("dialer/floor/", "dialer/app/", "dialer/telephony/")
PROTOCOL_CORES = (
    "dialer/telephony/tracker.py",
    "dialer/telephony/ami/connection.py",
    "dialer/telephony/ami/framing.py",
    "dialer/telephony/ami/messages.py",
)


def oversized(source: str, path: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > FUNCTION_MAX and not path.startswith(NOT_FUNCTIONS):
                out.append(f"{path}:{node.lineno} function {node.name}: {lines} lines")
        elif isinstance(node, ast.ClassDef):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            orchestration = path.startswith(ORCHESTRATION) and path not in PROTOCOL_CORES
            if lines > CLASS_MAX and orchestration:
                out.append(f"{path}:{node.lineno} class {node.name}: {lines} lines")
    return out


def test_no_function_or_orchestration_class_is_too_long() -> None:
    found = []
    for package in ("dialer", "ivr"):
        for file in sorted((ROOT / package).rglob("*.py")):
            rel = file.relative_to(ROOT).as_posix()
            found += oversized(file.read_text(encoding="utf-8"), rel)
    assert found == []


def test_the_checker_sees_a_long_function_and_a_long_class() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_MAX))
    long_function = f"def f():\n{body}\n"
    assert oversized(long_function, "dialer/lists/x.py") == [
        f"dialer/lists/x.py:1 function f: {FUNCTION_MAX + 1} lines"
    ]
    assert oversized(long_function, "dialer/store/migrations/versions/0009_x.py") == []
    methods = "\n".join(f"    def m{i}(self):\n        return {i}\n" for i in range(CLASS_MAX // 2))
    long_class = f"class C:\n{methods}"
    assert oversized(long_class, "dialer/floor/x.py")[0].startswith("dialer/floor/x.py:1 class C")
    assert oversized(long_class, "dialer/telephony/tracker.py") == []
