"""Durations as operators write them in campaign files: ``"10m"``, ``"2h"``, ``"30d"``, ``90``."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> dt.timedelta:
    """``"10m"``, ``"2h"``, ``"30d"``, ``90`` (seconds) -> timedelta."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 10m, 2h or 30d")
    if isinstance(value, int | float):
        return dt.timedelta(seconds=float(value))
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return dt.timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
    raise ValueError(f"expected a duration like 10m, 2h or 30d, got {value!r}")


def format_duration(td: dt.timedelta) -> str:
    s = int(td.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


__all__ = ["format_duration", "parse_duration"]
