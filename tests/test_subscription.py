"""The AMI events the dialer excludes at the switch (dialer.telephony.subscription) and the
simulated PBX's ``Filter`` action, which applies them as Asterisk 22 does (dialer.sim.filters).
The real switch takes the same filters in tests/real/test_real_outcomes.py."""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.sim.events import AmiEvent, format_event
from dialer.sim.filters import FilterError, SessionFilters, parse_filter
from dialer.telephony.subscription import (
    EVENT_FILTERS,
    UNREAD_EVENTS,
    EventFilter,
    Method,
    not_one_of,
)
from dialer.telephony.tracker import READ_APPLICATIONS, READ_VARIABLES, CallTracker

ROOT = Path(__file__).resolve().parent.parent
NAMES = st.text(alphabet="ABDGIMQSTUVX_", min_size=0, max_size=12)


@given(st.sets(NAMES.filter(bool), max_size=8), NAMES)
def test_not_one_of_matches_exactly_the_other_strings(words: set[str], probe: str) -> None:
    rx = re.compile(not_one_of(words))
    for s in (probe, *words, *(w[:-1] for w in words), *(w + "A" for w in words)):
        if s:  # Asterisk never matches an empty header value
            assert (rx.search(s) is not None) == (s not in words), (words, s)


def test_not_one_of_takes_plain_names_only() -> None:
    with pytest.raises(ValueError, match="plain name"):
        not_one_of(["IVR_RESULT", "A|B"])


def test_the_tracker_reads_no_variable_nor_application_the_switch_is_told_to_drop() -> None:
    """Every name ``_varset`` / ``_new_exten`` compares against is in the read sets."""
    for method, names in (
        (CallTracker._varset, READ_VARIABLES),
        (CallTracker._new_exten, READ_APPLICATIONS),
    ):
        tree = ast.parse(textwrap.dedent(inspect.getsource(method)))
        compared = {
            c.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Compare)
            for c in node.comparators
            if isinstance(c, ast.Constant) and isinstance(c.value, str) and c.value.isupper()
        }
        assert compared <= names, compared - names


def test_no_excluded_event_is_named_by_the_code_that_reads_events() -> None:
    skip = {"subscription.py"}
    sources = [
        p
        for d in ("dialer", "ivr")
        for p in (ROOT / d).rglob("*.py")
        if "sim" not in p.relative_to(ROOT).parts and p.name not in skip
    ]
    text = "\n".join(p.read_text() for p in sources)
    named = [n for n in UNREAD_EVENTS if f'"{n}"' in text]
    assert named == []
    # the agent pool and the floor read by prefix: never exclude one of those families
    assert not [n for n in UNREAD_EVENTS if n.startswith(("Agent", "QueueMember", "Queue"))]


def _event(name: str, **fields: str) -> AmiEvent:
    return AmiEvent(name, "call,all", tuple(fields.items()), 1.0)


def _filters(*pairs: tuple[str, str]) -> SessionFilters:
    out = SessionFilters()
    for criteria, pattern in pairs:
        out.add(parse_filter(criteria, pattern))
    return out


def _passes(f: SessionFilters, ev: AmiEvent) -> bool:
    return f.passes(ev.name, format_event(ev).decode())


def test_the_product_filters_on_the_simulated_pbx() -> None:
    f = _filters(*((x.criteria(), x.expression) for x in EVENT_FILTERS))
    assert not _passes(f, _event("VarSet", Channel="Local/x", Variable="DIALER_LANG", Value="zh"))
    assert not _passes(f, _event("Newexten", Application="GotoIf", AppData="1?a"))
    assert not _passes(f, _event("DeviceStateChange", Device="Local/x", State="INUSE"))
    for var in READ_VARIABLES:
        assert _passes(f, _event("VarSet", Variable=var, Value="x"))
    assert _passes(f, _event("Newexten", Application="AGI", AppData="agi://x"))
    assert _passes(f, _event("Hangup", Uniqueid="1", Cause="16"))
    assert _passes(f, _event("AgentConnect", Queue="sales"))


def test_filter_semantics_follow_asterisk() -> None:
    varset = _event("VarSet", Variable="FOO", Value="bar")
    hangup = _event("Hangup", Channel="Local/a")
    # no filter: everything
    assert _passes(SessionFilters(), varset)
    # legacy include regex over the whole event; '!' excludes
    only_hangups = _filters(("eventfilter", "Event: Hangup"))
    assert _passes(only_hangups, hangup) and not _passes(only_hangups, varset)
    no_locals = _filters(("eventfilter", "!Channel: Local/"))
    assert not _passes(no_locals, hangup) and _passes(no_locals, varset)
    # advanced: includes first, then excludes
    f = _filters(
        ("action(include),name(VarSet)", ""),
        ("action(include),name(Hangup)", ""),
        ("action(exclude),name(VarSet),header(Variable),method(exact)", "FOO"),
    )
    assert _passes(f, hangup) and not _passes(f, varset)
    assert _passes(f, _event("VarSet", Variable="BAR"))
    assert not _passes(f, _event("Newstate"))
    # header methods apply to the header's value only; an empty value never matches
    starts = _filters(("action(exclude),header(Channel),method(starts_with)", "Local/"))
    assert not _passes(starts, hangup) and _passes(starts, _event("Hangup", Channel=""))
    ends = _filters(("action(exclude),name(VarSet),header(Value),method(ends_with)", "ar"))
    assert not _passes(ends, varset)
    has = _filters(("action(exclude),header(Variable),method(contains)", "O"))
    assert not _passes(has, varset)


@pytest.mark.parametrize(
    ("criteria", "pattern", "message"),
    [
        ("eventfilter", "", "formatted incorrectly"),  # legacy without a pattern
        ("action(drop),name(VarSet)", "", "formatted incorrectly"),
        ("name(VarSet),method(regex)", "", "formatted incorrectly"),  # regex of nothing
        ("name(VarSet)", "x", "formatted incorrectly"),  # a pattern with method none
        ("colour(red)", "", "formatted incorrectly"),
        ("name(VarSet),method(regex)", "(", "did not compile"),
    ],
)
def test_bad_filters_are_refused(criteria: str, pattern: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        parse_filter(criteria, pattern)


def test_filter_criteria_are_asterisk_syntax() -> None:
    f = EventFilter("VarSet", "Variable", Method.REGEX, "^x")
    assert f.criteria() == "action(exclude),name(VarSet),header(Variable),method(regex)"
    assert dict(f.fields()) == {
        "Operation": "Add",
        "MatchCriteria": f.criteria(),
        "Filter": "^x",
    }
    assert "Filter" not in dict(EventFilter("LocalBridge").fields())
