"""AMI messages as our own immutable values.

Nothing outside ``dialer.telephony.ami`` sees wire bytes or a third-party message class: the framing
turns bytes into these, the adapter hands these to the tracker and the service.

AMI headers are an ordered list of ``Key: Value`` lines in which a key may repeat
(``Variable:`` on ``Originate`` and in ``Status`` replies, ``Output:`` on ``Command``), so
:class:`Headers` is an immutable *multi-valued* mapping: ``h["Variable"]`` is the first value,
``h.getall("Variable")`` every value in order. Keys compare case-insensitively (Asterisk itself
spells ``BridgeId`` and ``BridgeID`` for the same thing in two events).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence

from dialer.errors import LocalProtocolError


class Headers(Mapping[str, str]):
    """An immutable, ordered, multi-valued, case-insensitive mapping of AMI header lines."""

    __slots__ = ("_pairs", "_first", "_lower")

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        items = tuple(pairs)
        self._pairs = items
        self._first: dict[str, str] = dict(reversed(items))  # first value of each exact key
        self._lower: dict[str, str] | None = None

    @classmethod
    def _trusted(cls, pairs: tuple[tuple[str, str], ...], first: dict[str, str]) -> Headers:
        """Build from already-indexed data (the framing's hot path)."""
        h = cls.__new__(cls)
        h._pairs = pairs
        h._first = first
        h._lower = None
        return h

    def _folded(self) -> dict[str, str]:
        if self._lower is None:
            # reversed: the first line of a repeated key wins, as in ``_first``
            self._lower = {key.lower(): value for key, value in reversed(self._pairs)}
        return self._lower

    def __getitem__(self, key: str) -> str:
        try:
            return self._first[key]
        except KeyError:
            return self._folded()[key.lower()]

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        value = self._first.get(key)
        if value is None:
            return self._folded().get(key.lower(), default)
        return value

    def get_exact(self, key: str) -> str | None:
        """First value of ``key`` spelt exactly so (no case folding: the hot path)."""
        return self._first.get(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return key in self._first or key.lower() in self._folded()

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for key, _ in self._pairs:
            low = key.lower()
            if low not in seen:
                seen.add(low)
                yield key

    def __len__(self) -> int:
        return len(self._folded())

    def getall(self, key: str) -> tuple[str, ...]:
        low = key.lower()
        return tuple(v for k, v in self._pairs if k.lower() == low)

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """Every header line in wire order, repeats included."""
        return self._pairs

    def variables(self) -> dict[str, str]:
        """``Variable: K=V`` lines (Originate, Status with Variables) as a dict."""
        out: dict[str, str] = {}
        for raw in self.getall("Variable"):
            name, sep, value = raw.partition("=")
            if sep:
                out[name] = value
        return out

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._pairs == other._pairs
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._pairs)

    def __repr__(self) -> str:
        return f"Headers({list(self._pairs)!r})"


@dataclasses.dataclass(frozen=True, slots=True)
class Banner:
    """The greeting line, e.g. ``Asterisk Call Manager/11.0.0``."""

    text: str

    @property
    def version(self) -> str:
        return self.text.partition("/")[2].strip()


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    name: str
    headers: Headers

    @property
    def action_id(self) -> str | None:
        return self.headers.get("ActionID")

    @property
    def timestamp(self) -> float | None:
        """When Asterisk raised the event (epoch seconds, its clock): the ``Timestamp:``
        header of ``timestampevents = yes``, e.g. ``1796013167.009990``. None without one (list
        items of an action carry none) or when it is not a finite number."""
        raw = self.headers.get_exact("Timestamp")
        if not raw:
            return None
        try:
            value = float(raw)
        except ValueError:
            return None
        return value if math.isfinite(value) else None

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.headers.get(key, default)


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """``Response: Success|Error|Goodbye|Follows`` and its headers.

    ``output`` holds body lines that are not ``Key: Value`` headers: the legacy
    ``Response: Follows`` command output (before ``--END COMMAND--``).
    """

    status: str
    headers: Headers
    output: tuple[str, ...] = ()

    @property
    def action_id(self) -> str | None:
        return self.headers.get("ActionID")

    @property
    def ok(self) -> bool:
        return self.status.lower() in ("success", "follows", "goodbye")

    @property
    def message(self) -> str:
        return self.headers.get("Message") or ""

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.headers.get(key, default)


@dataclasses.dataclass(frozen=True, slots=True)
class Unrecognised:
    """A blank-line-terminated block with neither ``Event:`` nor ``Response:``."""

    headers: Headers
    lines: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Closed:
    """End of stream. ``clean`` is False when it cut a message in half."""

    clean: bool
    pending_bytes: int = 0


Message = Banner | Event | Response | Unrecognised | Closed


@dataclasses.dataclass(frozen=True, slots=True)
class Action:
    """An action to send. ``fields`` may repeat keys (``Variable``)."""

    name: str
    action_id: str
    fields: tuple[tuple[str, str], ...] = ()

    def to_bytes(self) -> bytes:
        return serialize_action(self.name, self.action_id, self.fields)

    def get(self, key: str) -> str | None:
        low = key.lower()
        for k, v in self.fields:
            if k.lower() == low:
                return v
        return None


def _check(part: str, what: str) -> None:
    if "\r" in part or "\n" in part:
        raise LocalProtocolError(f"AMI {what} contains a line break: {part[:40]!r}")


def serialize_action(name: str, action_id: str, fields: Sequence[tuple[str, str]] = ()) -> bytes:
    """Encode one action as UTF-8 ``Key: Value\\r\\n`` lines and a blank line."""
    _check(name, "action name")
    _check(action_id, "ActionID")
    lines = [f"Action: {name}", f"ActionID: {action_id}"]
    for key, value in fields:
        _check(key, "header name")
        _check(value, f"value of {key}")
        if not key or ":" in key:
            raise LocalProtocolError(f"bad AMI header name {key!r}")
        lines.append(f"{key}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
