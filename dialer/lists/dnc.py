"""Do-not-call lists: exact numbers and prefixes, each for every purpose or marketing only.

Numbers are stored in E.164 (``+8613800138000``); prefixes as ``+`` and digits
(``+86138``). A prefix written without a country code is read in the default region
(``138`` -> ``+86138``, ``010`` -> ``+8610``: the national trunk prefix is dropped).

``DncMatcher`` is loaded once and answers "is this number blocked for this purpose?" with a
dict lookup for the exact number plus one per prefix length of the number.
"""

from __future__ import annotations

import csv
import enum
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dialer.errors import ConfigError, ImportRejected
from dialer.lists import prepared
from dialer.lists.contacts import detect_encoding, parse_phone
from dialer.store.models import DncEntry


class DncScope(enum.StrEnum):
    ALL = "all"  # every campaign
    MARKETING = "marketing"  # campaigns whose purpose is marketing


class DncChannel(enum.StrEnum):
    """The channel an entry bars; ``all`` bars every one (calls, SMS, e-mail)."""

    ALL = "all"
    VOICE = "voice"
    SMS = "sms"
    EMAIL = "email"


def channels_barring(channel: DncChannel) -> tuple[str, ...]:
    """Entry channels that bar ``channel``: its own and ``all``."""
    return (
        (DncChannel.ALL.value,)
        if channel is DncChannel.ALL
        else (DncChannel.ALL.value, channel.value)
    )


MARKETING_PURPOSE = "marketing"
_MIN_PREFIX_DIGITS = 2
_SEPARATORS = re.compile(r"[\s\-().]")


def normalize_number(text: str, default_region: str) -> str:
    """A full number in E.164; raises ConfigError if it is not a valid number."""
    parsed = parse_phone(text.strip(), default_region)
    if parsed is None:
        raise ConfigError(f"not a valid phone number: {text!r}")
    return parsed.e164


def normalize_prefix(text: str, default_region: str) -> str:
    """A number prefix as ``+<digits>``; raises ConfigError if it is not one."""
    s = _SEPARATORS.sub("", text.strip()).rstrip("*")
    if s.startswith("00"):
        s = "+" + s[2:]
    if s.startswith("+"):
        digits = s[1:]
        if not digits.isdigit() or not digits.isascii():
            raise ConfigError(f"not a number prefix: {text!r}")
        out = "+" + digits
    else:
        if not s.isdigit() or not s.isascii():
            raise ConfigError(f"not a number prefix: {text!r}")
        meta = phonenumbers.PhoneMetadata.metadata_for_region(default_region.upper())
        if meta is None:
            raise ConfigError(f"unknown region {default_region!r}")
        trunk = meta.national_prefix or ""
        if trunk and s.startswith(trunk):
            s = s[len(trunk) :]
        out = f"+{meta.country_code}{s}"
    if len(out) - 1 < _MIN_PREFIX_DIGITS or len(out) > 16:
        raise ConfigError(f"a prefix needs {_MIN_PREFIX_DIGITS} to 15 digits: {text!r}")
    return out


def normalize(text: str, *, prefix: bool, default_region: str) -> str:
    return (
        normalize_prefix(text, default_region) if prefix else normalize_number(text, default_region)
    )


def scope_applies(scope: str, purpose: str) -> bool:
    return scope == DncScope.ALL or purpose == MARKETING_PURPOSE


def dnc_statements(
    numbers: Iterable[str], channel: DncChannel = DncChannel.VOICE
) -> tuple[Any, Any]:
    """(every prefix entry, the exact entries of ``numbers``) barring ``channel``: two
    queries, each served by an index (``ix_dnc_prefix``, ``dnc.number``). One query with
    ``is_prefix OR number IN (...)`` read the whole list on SQLite. The prepared statements
    with their values bound (``DncMatcher.for_numbers`` runs them with parameters)."""
    channels = list(channels_barring(channel))
    return (
        prepared.DNC_PREFIXES.params(channels=channels),
        prepared.DNC_EXACT.params(channels=channels, numbers=list(numbers)),
    )


@dataclass
class DncMatcher:
    """In-memory DNC lookups: exact number -> scopes, prefix -> scopes."""

    exact: dict[str, set[str]] = field(default_factory=dict)
    prefixes: dict[str, set[str]] = field(default_factory=dict)

    def add(self, number: str, is_prefix: bool, scope: str) -> None:
        table = self.prefixes if is_prefix else self.exact
        table.setdefault(number, set()).add(scope)

    @classmethod
    def of(cls, entries: Iterable[tuple[str, bool, str]]) -> DncMatcher:
        m = cls()
        for number, is_prefix, scope in entries:
            m.add(number, is_prefix, scope)
        return m

    @classmethod
    def load(cls, session: Session, channel: DncChannel = DncChannel.VOICE) -> DncMatcher:
        """Every entry that bars ``channel`` (for explain over a whole campaign)."""
        rows = session.execute(
            select(DncEntry.number, DncEntry.is_prefix, DncEntry.scope).where(
                DncEntry.channel.in_(channels_barring(channel))
            )
        )
        return cls.of((n, bool(p), s) for n, p, s in rows)

    @classmethod
    def for_numbers(
        cls, session: Session, numbers: Iterable[str], channel: DncChannel = DncChannel.VOICE
    ) -> DncMatcher:
        """Entries that can block ``numbers`` on ``channel``: their exact rows plus every
        prefix row."""
        nums = sorted(set(numbers))
        m = cls()
        channels = list(channels_barring(channel))
        for n, p, s in session.execute(prepared.DNC_PREFIXES, {"channels": channels}):
            m.add(n, bool(p), s)
        for i in range(0, len(nums), 500):
            part = {"channels": channels, "numbers": nums[i : i + 500]}
            for n, p, s in session.execute(prepared.DNC_EXACT, part):
                m.add(n, bool(p), s)
        return m

    def scopes_for(self, e164: str) -> set[str]:
        out = set(self.exact.get(e164, ()))
        if self.prefixes:
            for k in range(_MIN_PREFIX_DIGITS + 1, len(e164) + 1):
                got = self.prefixes.get(e164[:k])
                if got:
                    out |= got
        return out

    def blocks(self, e164: str, purpose: str) -> bool:
        scopes = self.scopes_for(e164)
        return any(scope_applies(s, purpose) for s in scopes)

    def __len__(self) -> int:
        return len(self.exact) + len(self.prefixes)


# --- store operations ---------------------------------------------------------------------


def add_entry(
    session: Session,
    number: str,
    *,
    prefix: bool = False,
    scope: DncScope = DncScope.ALL,
    reason: str | None = None,
    source: str = "cli",
    channel: DncChannel = DncChannel.ALL,
) -> tuple[DncEntry, bool]:
    """Add a normalised entry (idempotent). Returns (row, created)."""
    row = session.scalars(
        select(DncEntry).where(
            DncEntry.number == number,
            DncEntry.is_prefix == prefix,
            DncEntry.scope == scope.value,
            DncEntry.channel == channel.value,
        )
    ).one_or_none()
    if row is not None:
        return row, False
    row = DncEntry(
        number=number,
        is_prefix=prefix,
        scope=scope.value,
        reason=reason,
        source=source,
        channel=channel.value,
    )
    session.add(row)
    session.flush()
    return row, True


def remove_entry(
    session: Session, number: str, *, prefix: bool = False, scope: DncScope | None = None
) -> int:
    """Remove an entry (every scope unless one is given). Returns how many rows went."""
    q = delete(DncEntry).where(DncEntry.number == number, DncEntry.is_prefix == prefix)
    if scope is not None:
        q = q.where(DncEntry.scope == scope.value)
    return int(session.execute(q).rowcount or 0)  # type: ignore[attr-defined]


@dataclass
class DncImportReport:
    added: int = 0
    already: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (row, text)

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "already": self.already,
            "rejected": [{"row": r, "reason": "invalid_number"} for r, _ in self.rejected],
        }


def import_entries(
    session: Session,
    path: Path,
    *,
    default_region: str,
    scope: DncScope = DncScope.ALL,
    source: str = "import",
    encoding: str | None = None,
) -> DncImportReport:
    """One number per line (first column of a CSV; a header row is skipped).

    A value ending in ``*`` is a prefix (``+86170*``).
    """
    enc = encoding or detect_encoding(path)
    try:
        text = path.read_text(encoding=enc)
    except UnicodeDecodeError as exc:
        raise ImportRejected(f"{path}: not valid {enc}") from exc
    existing = {
        (n, bool(p))
        for n, p in session.execute(
            select(DncEntry.number, DncEntry.is_prefix).where(DncEntry.scope == scope.value)
        )
    }
    report = DncImportReport()
    new: list[dict[str, Any]] = []
    row = 0
    first = True
    for rec in csv.reader(io.StringIO(text)):
        if not rec or not rec[0].strip():
            continue
        value = rec[0].strip()
        if first:
            first = False
            if not any(ch.isdigit() for ch in value):
                continue  # a header line
        row += 1
        is_prefix = value.endswith("*")
        try:
            number = normalize(value, prefix=is_prefix, default_region=default_region)
        except ConfigError:
            report.rejected.append((row, value))
            continue
        if (number, is_prefix) in existing:
            report.already += 1
            continue
        existing.add((number, is_prefix))
        reason = rec[1].strip() if len(rec) > 1 and rec[1].strip() else None
        new.append(
            {
                "number": number,
                "is_prefix": is_prefix,
                "scope": scope.value,
                "reason": reason,
                "source": source,
            }
        )
    if new:
        from sqlalchemy import insert

        for i in range(0, len(new), 5000):
            session.execute(insert(DncEntry), new[i : i + 5000])
    report.added = len(new)
    return report


def list_entries(session: Session, scope: DncScope | None = None) -> list[DncEntry]:
    q = select(DncEntry).order_by(DncEntry.is_prefix, DncEntry.number, DncEntry.scope)
    if scope is not None:
        q = q.where(DncEntry.scope == scope.value)
    return list(session.scalars(q))


__all__ = [
    "DncChannel",
    "DncImportReport",
    "DncMatcher",
    "DncScope",
    "add_entry",
    "channels_barring",
    "import_entries",
    "list_entries",
    "normalize",
    "normalize_number",
    "normalize_prefix",
    "remove_entry",
    "scope_applies",
]
