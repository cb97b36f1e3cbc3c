"""One DNC model, scoped per channel: an entry bars its channel (or all), for every purpose
or marketing only; an SMS opt-out stops marketing SMS and leaves calls to their own rules."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.app.cli import cli
from dialer.lists.dnc import DncChannel, DncMatcher, DncScope, add_entry, scope_applies
from dialer.messaging import outbox
from dialer.messaging.keywords import Classifier
from dialer.messaging.templates import Channel, MessagePurpose
from dialer.store import Store, open_store
from dialer.store.models import DncEntry

N = "+8613800000001"
entries = st.lists(
    st.tuples(st.sampled_from(list(DncChannel)), st.sampled_from(list(DncScope))),
    max_size=6,
    unique=True,
)


@settings(max_examples=40, deadline=None)
@given(
    entries,
    st.sampled_from([DncChannel.VOICE, DncChannel.SMS]),
    st.sampled_from(["marketing", "service", "collections"]),
)
def test_an_entry_bars_its_channel_only(
    rows: list[tuple[DncChannel, DncScope]], channel: DncChannel, purpose: str
) -> None:
    store = open_store("sqlite://")
    with store.session() as s:
        for ch, scope in rows:
            s.add(DncEntry(number=N, is_prefix=False, scope=scope.value, channel=ch.value))
        s.flush()
        blocked = DncMatcher.for_numbers(s, [N], channel).blocks(N, purpose)
    expected = any(
        ch in (DncChannel.ALL, channel) and scope_applies(scope.value, purpose)
        for ch, scope in rows
    )
    assert blocked == expected
    store.dispose()


def test_sms_opt_out_bars_marketing_sms_not_calls(store: Store) -> None:
    now = dt.datetime.now(dt.UTC)
    with store.session() as s:
        outbox.enqueue_sms(s, to=N, text="x", purpose=MessagePurpose.MARKETING)
        m = outbox.enqueue_sms(s, to=N, text="y")
        outbox.transition(s, m, outbox.MsgEvent.CLAIM, now)
        outbox.apply_reply(
            s,
            channel=Channel.SMS,
            gateway_id="k:1",
            sender=N,
            receiver=None,
            text="退订",
            now=now,
            classify=Classifier(),
        )
        assert DncMatcher.for_numbers(s, [N], DncChannel.SMS).blocks(N, "marketing")
        assert not DncMatcher.for_numbers(s, [N], DncChannel.SMS).blocks(N, "service")
        assert not DncMatcher.for_numbers(s, [N]).blocks(N, "marketing")  # voice
        add_entry(s, N, scope=DncScope.ALL, channel=DncChannel.VOICE)
        assert DncMatcher.for_numbers(s, [N]).blocks(N, "service")
        assert not DncMatcher.for_numbers(s, [N], DncChannel.SMS).blocks(N, "service")


def test_dnc_cli_channel(tmp_path: Path, sqlite_url: str) -> None:
    db = ["--db", sqlite_url]
    r = CliRunner().invoke(cli, [*db, "dnc", "add", "13800000001", "--channel", "sms"])
    assert r.exit_code == 0 and "(all, sms)" in r.output
    r = CliRunner().invoke(cli, [*db, "dnc", "list", "--json"])
    assert '"channel": "sms"' in r.output
