"""Read the recorded Asterisk transcripts (``shared/asterisk/transcripts/ami-*.txt``).

A transcript interleaves what the client sent (after ``### [t] SEND``) with what Asterisk
answered, one connection after another (each starts with ``### [t] BANNER '...'`` and ends at
``### [t] EOF``). This module rebuilds, per connection, the exact byte stream the client
received (``\\r\\n`` line ends, as Asterisk sends them) and the actions it sent, so tests and
benchmarks can replay real traffic through the framing and the tracker.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

_MARK = re.compile(r"^### \[\s*([0-9.]+)\] (.*)$")
_RECEIVED_START = ("Response:", "Event:")


@dataclasses.dataclass
class RecordedConnection:
    banner: str
    received_lines: list[str] = dataclasses.field(default_factory=list)
    #: (index into received_lines when it was sent, the action's lines)
    sent: list[tuple[int, list[str]]] = dataclasses.field(default_factory=list)
    scenarios: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    closed: bool = False

    def received_bytes(self, start: int = 0, end: int | None = None) -> bytes:
        """The bytes the client read (greeting line first), or a slice of its lines."""
        lines = self.received_lines[start:end]
        head = self.banner + "\r\n" if start == 0 else ""
        text = head + "".join(line + "\r\n" for line in lines)
        return text.encode("utf-8")


def read_transcript(path: Path | str) -> list[RecordedConnection]:
    conns: list[RecordedConnection] = []
    cur: RecordedConnection | None = None
    mode = "recv"
    for raw in Path(path).read_text(encoding="utf-8").split("\n"):
        m = _MARK.match(raw)
        if m:
            what = m.group(2)
            if what.startswith("BANNER "):
                cur = RecordedConnection(banner=what[len("BANNER ") :].strip("'"))
                conns.append(cur)
                mode = "recv"
            elif cur is None:
                continue
            elif what == "SEND":
                cur.sent.append((len(cur.received_lines), []))
                mode = "send"
            elif what == "EOF":
                cur.closed = True
                mode = "recv"
            elif what.startswith("====="):
                cur.scenarios.append((len(cur.received_lines), what.strip("= ").strip()))
            continue
        if cur is None:
            continue
        if mode == "send":
            if raw.startswith(_RECEIVED_START):
                mode = "recv"
            else:
                if raw:
                    cur.sent[-1][1].append(raw)
                continue
        cur.received_lines.append(raw)
    # drop the trailing empty line that the file's final newline leaves behind
    for c in conns:
        while len(c.received_lines) > 1 and c.received_lines[-1] == "" == c.received_lines[-2]:
            c.received_lines.pop()
    return conns


def action_fields(lines: list[str]) -> dict[str, str]:
    """A sent action's lines as a dict (first value of repeated keys)."""
    out: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition(":")
        out.setdefault(key.strip(), value.strip())
    return out
