"""The AMI events this service never reads, excluded at the switch.

A call dialled into the project's dialplan makes ~55 AMI events; the dialer reads ~12 of them.
The rest (the Originate's own variables echoed back as ``VarSet``, every dialplan step as
``Newexten``, device states, caller-id and connected-line updates, local bridges...) cost the
switch the writing and us the parsing - half of the dialer's CPU per call before this filter.

After each login, before the resync, the core sends one ``Filter`` action per entry of
:data:`EVENT_FILTERS` (Asterisk's advanced event filters, per session: another AMI user or a
monitoring tool on the same switch still sees everything). Only *exclude* filters are used, so
an event this table does not name still arrives: a forgotten entry costs CPU, never a fact.
A switch that refuses a filter (older than Asterisk 21, or no ``system`` write permission) is
logged once per login and the session stays unfiltered.

The simulated PBX applies the same filters with the same semantics (``dialer/sim/ami_server``).
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dialer.errors import AMIError
from dialer.telephony.tracker import READ_APPLICATIONS, READ_VARIABLES

if TYPE_CHECKING:
    from dialer.telephony.ami.adapter import AMIClient

log = logging.getLogger(__name__)


class Method(enum.StrEnum):
    """How an advanced filter's expression is applied (Asterisk's ``method(...)``)."""

    NONE = "none"
    REGEX = "regex"
    EXACT = "exact"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    CONTAINS = "contains"


@dataclass(frozen=True)
class EventFilter:
    """One advanced exclude filter: events named ``name`` (and, with ``header``, whose header
    value matches ``expression`` by ``method``) never reach this session."""

    name: str
    header: str | None = None
    method: Method = Method.NONE
    expression: str = ""

    def criteria(self) -> str:
        """The ``MatchCriteria`` of the ``Filter`` action."""
        parts = ["action(exclude)", f"name({self.name})"]
        if self.header is not None:
            parts.append(f"header({self.header})")
        parts.append(f"method({self.method.value})")
        return ",".join(parts)

    def fields(self) -> tuple[tuple[str, str], ...]:
        out = (("Operation", "Add"), ("MatchCriteria", self.criteria()))
        return (*out, ("Filter", self.expression)) if self.expression else out


_WORD = re.compile(r"[A-Za-z0-9_]+")


@dataclass
class _Node:
    """A trie node: the words through here go on with ``children``; ``word``: one ends here."""

    children: dict[str, _Node] = field(default_factory=dict)
    word: bool = False

    def leaving(self) -> str:
        """A regex for the rest of any string that is not a word from here on."""
        keys = sorted(self.children)
        alts = [] if self.word else ["$"]  # the string stops here, short of a word
        alts.append(f"[^{''.join(keys)}]" if keys else ".")  # it turns off every word
        alts += [f"{ch}({self.children[ch].leaving()})" for ch in keys]
        return "|".join(alts)


def not_one_of(words: Iterable[str]) -> str:
    """A POSIX extended regular expression matching every string *except* those in ``words``.
    Asterisk's regex filters cannot negate, and an exclude filter must name what to drop."""
    root = _Node()
    for word in words:
        if not _WORD.fullmatch(word):
            raise ValueError(f"not a plain name: {word!r}")
        node = root
        for ch in word:
            node = node.children.setdefault(ch, _Node())
        node.word = True
    return f"^({root.leaving()})"


#: Events no part of the service reads (the tracker, the agent pool, the floor's feeds, the
#: desk, personal callbacks); ``tests/test_subscription.py`` checks none is named in the code.
UNREAD_EVENTS = (
    "DeviceStateChange",
    "NewCallerid",
    "NewConnectedLine",
    "NewAccountCode",
    "SoftHangupRequest",
    "HangupRequest",
    "LocalBridge",
    "DialEnd",
    "DialState",
    "BridgeCreate",
    "BridgeDestroy",
    "BridgeLeave",
    "MusicOnHoldStart",
    "MusicOnHoldStop",
    "Hold",
    "Unhold",
)

EVENT_FILTERS: tuple[EventFilter, ...] = (
    *(EventFilter(name) for name in UNREAD_EVENTS),
    EventFilter("VarSet", "Variable", Method.REGEX, not_one_of(READ_VARIABLES)),
    EventFilter("Newexten", "Application", Method.REGEX, not_one_of(READ_APPLICATIONS)),
)


async def apply_filters(client: AMIClient, filters: Iterable[EventFilter] = EVENT_FILTERS) -> bool:
    """Send the filters on the session just logged in; False when the switch refused one (the
    session then gets what it got before: every event of the user's read classes)."""
    sent = 0
    for f in filters:
        try:
            result = await client.action("Filter", f.fields())
        except AMIError as exc:  # a lost connection is the reconnect's business
            log.warning("AMI event filter not applied (%s): events arrive unfiltered", exc)
            return False
        if not result.response.ok:
            log.warning(
                "the switch refused AMI event filter %s (%s): events arrive unfiltered past it",
                f.criteria(),
                result.response.message,
            )
            return False
        sent += 1
    log.debug("AMI event filters applied: %d", sent)
    return True
