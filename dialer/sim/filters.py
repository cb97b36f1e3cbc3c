"""AMI event filters as Asterisk 22 applies them (``main/manager.c``: ``manager_add_filter``,
``filter_cmp_fn``, ``should_send_event``), for the ``Filter`` action of the simulated PBX.

Legacy filters are a regular expression over the whole event (``!`` in front: exclude).
Advanced filters (``MatchCriteria: action(...),name(...),header(...),method(...)``) select by
event name, and with ``header`` match the expression against that header's value only (every
line of the event starting with ``Header:``, blanks skipped, empty values never match).
No filter: everything passes; includes only: what matches one; excludes only: what matches
none; both: what matches an include and no exclude.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field


class FilterError(ValueError):
    """The filter is refused; ``str()`` is Asterisk's ``Message``."""


FORMAT_ERROR = "Filter was formatted incorrectly.  Check the syntax of the filter given."
COMPILE_ERROR = "Filter did not compile.  Check the syntax of the filter given."


class Match(enum.Enum):
    REGEX = "regex"
    EXACT = "exact"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    CONTAINS = "contains"
    NONE = "none"


@dataclass(frozen=True)
class Entry:
    exclude: bool
    match: Match
    pattern: str = ""
    name: str | None = None
    header: str | None = None  # with its ':'
    regex: re.Pattern[str] | None = None

    def _data(self, data: str) -> bool:
        m, p = self.match, self.pattern
        if m is Match.REGEX:
            return self.regex is not None and self.regex.search(data) is not None
        if m is Match.STARTS_WITH:
            return data.startswith(p)
        if m is Match.ENDS_WITH:
            return data.endswith(p)
        if m is Match.CONTAINS:
            return p in data
        if m is Match.EXACT:
            return data == p
        return True

    def matches(self, name: str, payload: str) -> bool:
        if self.name is not None and name != self.name:
            return False
        if self.header is None:
            return self._data(payload)
        for line in payload.split("\n"):
            line = line.removesuffix("\r")
            if line.startswith(self.header):
                value = line[len(self.header) :].lstrip(" \t")
                if value and self._data(value):
                    return True
        return False


def _option(token: str) -> tuple[str, str]:
    key, paren, value = token.partition("(")
    return key, value.strip() if paren else ""


def parse_filter(criteria: str, pattern: str) -> Entry:
    """One ``Filter`` action's ``MatchCriteria`` (may be empty) and ``Filter``."""
    exclude = pattern.startswith("!")
    if exclude:
        pattern = pattern[1:]
    if "(" not in criteria:  # legacy: a regex over the whole event
        if not pattern:
            raise FilterError(FORMAT_ERROR)
        return Entry(exclude, Match.REGEX, pattern, regex=_compile(pattern))
    body = criteria.strip()
    if not body.endswith(")"):
        raise FilterError(FORMAT_ERROR)
    match, name, header, found = Match.NONE, None, None, False
    for token in filter(None, re.split(r"[ ,)]", body)):
        key, value = _option(token)
        if not value and key in ("action", "name", "header", "method"):
            raise FilterError(FORMAT_ERROR)
        if key.startswith("action"):
            if value not in ("include", "exclude"):
                raise FilterError(FORMAT_ERROR)
            exclude = value == "exclude"
        elif key.startswith("name"):
            name = value
        elif key.startswith("header"):
            header = value if value.endswith(":") else value + ":"
        elif key.startswith("method"):
            try:
                match = Match(value)
            except ValueError:
                raise FilterError(FORMAT_ERROR) from None
        else:
            raise FilterError(FORMAT_ERROR)
        found = True
    if (
        not found
        or (not pattern and match is not Match.NONE)
        or (pattern and match is Match.NONE)
        or (name is None and header is None and match is Match.NONE)
    ):
        raise FilterError(FORMAT_ERROR)
    regex = _compile(pattern) if match is Match.REGEX else None
    return Entry(exclude, match, pattern, name, header, regex)


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error:
        raise FilterError(COMPILE_ERROR) from None


@dataclass
class SessionFilters:
    """The filters one AMI session has added (they end with the session)."""

    include: list[Entry] = field(default_factory=list)
    exclude: list[Entry] = field(default_factory=list)

    def add(self, entry: Entry) -> None:
        (self.exclude if entry.exclude else self.include).append(entry)

    def __bool__(self) -> bool:
        return bool(self.include or self.exclude)

    def passes(self, name: str, payload: str) -> bool:
        if self.include and not any(f.matches(name, payload) for f in self.include):
            return False
        return not any(f.matches(name, payload) for f in self.exclude)
