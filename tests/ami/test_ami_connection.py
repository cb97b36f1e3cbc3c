"""The sans-I/O AMI connection, replayed from the recorded Asterisk transcripts: no socket.

Every recorded connection is fed to an ``AMIConnection`` a few bytes at a time, with the
actions the recording client sent queued at the points it sent them. The session must walk
its table (banner, login sent, resyncing, ready, closed), pair every response with its action
by ActionID, collect list actions whole (and keep their items out of the event stream), and
fail what is still pending when the stream ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from pathlib import Path

import pytest

from dialer.errors import AMIDisconnected, IllegalTransition
from dialer.telephony.ami.adapter import AMIClient
from dialer.telephony.ami.connection import (
    TRANSITIONS,
    ActionDone,
    ActionFailed,
    AMIConnection,
    ConnectionClosed,
    ConnInput,
    ConnState,
    EventReceived,
    Greeted,
    Happening,
    LoggedIn,
    LoginRefused,
)
from dialer.telephony.ami.framing import AMIFraming
from dialer.telephony.ami.messages import Action, Event
from dialer.telephony.ami.transcript import RecordedConnection, action_fields, read_transcript

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ami"
TRANSCRIPTS = sorted(p.name for p in FIXTURES.glob("ami-*.txt"))
CHUNK = 7  # bytes per read: messages, and UTF-8 characters, straddle reads


@dataclasses.dataclass
class Run:
    conn: AMIConnection
    happened: list[Happening]
    states: list[ConnState]
    sent: dict[str, str]  # ActionID -> action name (not the login)
    written: bytes


def _feed(conn: AMIConnection, data: bytes, run: Run, *, eof: bool = False) -> None:
    for i in range(0, max(len(data), int(eof)), CHUNK):  # eof: one read of b""
        for h in conn.receive_data(data[i : i + CHUNK]):
            run.happened.append(h)
            if isinstance(h, LoggedIn):
                run.states.append(conn.state)
                conn.resynced()  # nothing to catch up with in a replay
            if conn.state is not run.states[-1]:
                run.states.append(conn.state)
        run.written += conn.data_to_send()


def _lines(rec: RecordedConnection, start: int, end: int | None = None) -> bytes:
    return "".join(line + "\r\n" for line in rec.received_lines[start:end]).encode()


def replay(rec: RecordedConnection) -> Run:
    login_lines = next((lines for _, lines in rec.sent if "Action: Login" in lines), None)
    fields = action_fields(login_lines or [])
    first_id = int((fields.get("ActionID") or "login-1").rsplit("-", 1)[1])
    conn = AMIConnection(
        fields.get("Username", "dialer"),
        fields.get("Secret", "x"),
        ids=itertools.count(first_id),
    )
    run = Run(conn, [], [conn.state], {}, b"")
    _feed(conn, (rec.banner + "\r\n").encode(), run)
    at = 0
    for index, lines in rec.sent:
        _feed(conn, _lines(rec, at, index), run)
        at = index
        sent = action_fields(lines)
        if sent.get("Action") == "Login":
            continue
        if conn.state in (ConnState.RESYNCING, ConnState.READY):
            aid = sent["ActionID"]
            extra = tuple((k, v) for k, v in sent.items() if k not in ("Action", "ActionID"))
            conn.send(Action(sent["Action"], aid, extra))
            run.sent[aid] = sent["Action"]
    _feed(conn, _lines(rec, at), run)
    if rec.closed:
        _feed(conn, b"", run, eof=True)
    return run


@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_recorded_connections_replay_through_the_table(name: str) -> None:
    for rec in read_transcript(FIXTURES / name):
        run = replay(rec)
        greeted = [h for h in run.happened if isinstance(h, Greeted)]
        assert [g.banner.text for g in greeted] == [rec.banner]
        assert b"Action: Login\r\n" in run.written
        refused = [h for h in run.happened if isinstance(h, LoginRefused)]
        if refused or not any(isinstance(h, LoggedIn) for h in run.happened):
            # refused, or closed by the server before any answer to the Login
            assert run.states == [ConnState.AWAITING_BANNER, ConnState.LOGIN_SENT, ConnState.CLOSED]
            assert not run.sent and not any(isinstance(h, ActionFailed) for h in run.happened)
            continue
        assert run.states[:4] == [
            ConnState.AWAITING_BANNER,
            ConnState.LOGIN_SENT,
            ConnState.RESYNCING,
            ConnState.READY,
        ]
        done = {h.action_id: h.result for h in run.happened if isinstance(h, ActionDone)}
        failed = {h.action_id for h in run.happened if isinstance(h, ActionFailed)}
        # every action sent is answered exactly once, or failed because the stream ended
        assert set(done) | failed == set(run.sent) and not set(done) & failed
        assert not failed or run.conn.state is ConnState.CLOSED
        for aid, result in done.items():
            assert result.response.action_id == aid
            listed = result.response.headers.get("EventList", "").lower() == "start"
            if listed:
                assert all(e.headers.get("ActionID") == aid for e in result.events)
        list_ids = {aid for aid, r in done.items() if r.events}
        for h in run.happened:
            if isinstance(h, EventReceived):  # list items never reach the event stream
                assert h.event.headers.get("ActionID") not in list_ids
        if rec.closed:
            assert run.conn.state is ConnState.CLOSED
            assert isinstance(run.happened[-1], ConnectionClosed)


def test_list_actions_are_collected_whole() -> None:
    """A list's result holds as many items as its closing event's ``ListItems`` counts."""
    checked = 0
    for name in TRANSCRIPTS:
        for rec in read_transcript(FIXTURES / name):
            framing = AMIFraming()
            closing = {
                m.headers.get("ActionID"): m
                for m in framing.receive_data(rec.received_bytes()) + framing.receive_data(b"")
                if isinstance(m, Event) and (m.headers.get("EventList") or "") == "Complete"
            }
            for h in replay(rec).happened:
                if isinstance(h, ActionDone) and h.action_id in closing:
                    items = closing[h.action_id].headers.get("ListItems")
                    if items is not None:
                        assert len(h.result.events) == int(items), (name, h.action_id)
                        checked += 1
    assert checked >= 20


def test_pending_actions_fail_when_the_stream_ends_and_nothing_is_resent() -> None:
    conn = AMIConnection("dialer", "s3cret")
    conn.receive_data(b"Asterisk Call Manager/11.0.0\r\n")
    login = conn.data_to_send()
    assert b"ActionID: login-1\r\n" in login and b"Secret: s3cret\r\n" in login
    with pytest.raises(AMIDisconnected):  # nothing but the login before it is accepted
        conn.send(Action("Ping", "ping-2"))
    [happened] = conn.receive_data(b"Response: Success\r\nActionID: login-1\r\n\r\n")
    assert isinstance(happened, LoggedIn) and conn.state is ConnState.RESYNCING
    conn.send(Action("Originate", "o-9", (("Channel", "Local/1@x"),)))
    assert (
        conn.data_to_send() == b"Action: Originate\r\nActionID: o-9\r\nChannel: Local/1@x\r\n\r\n"
    )
    with pytest.raises(IllegalTransition):
        conn.send(Action("Originate", "o-9"))
    conn.resynced()
    out = conn.receive_data(b"")
    assert [type(h) for h in out] == [ActionFailed, ConnectionClosed]
    assert conn.state is ConnState.CLOSED and conn.data_to_send() == b""  # never re-sent
    with pytest.raises(AMIDisconnected):
        conn.send(Action("Ping", "ping-3"))


def test_the_table_refuses_what_it_does_not_name() -> None:
    assert (ConnState.READY, ConnInput.BANNER) not in TRANSITIONS
    conn = AMIConnection("dialer", "x")
    with pytest.raises(IllegalTransition):
        conn.resynced()  # not logged in
    conn.receive_data(b"Asterisk Call Manager/11.0.0\r\n")
    conn.receive_data(b"Response: Success\r\nActionID: login-1\r\n\r\n")
    conn.resynced()
    with pytest.raises(IllegalTransition):  # ready once per connection
        conn.resynced()


class ReplayPeer:
    """The recorded Asterisk side of one connection, as the injected opener's reader and writer:
    each action the client writes releases what Asterisk sent until the next recorded send."""

    def __init__(self, rec: RecordedConnection) -> None:
        self.rec = rec
        self.reader = asyncio.StreamReader()
        self.pending = list(rec.sent)
        self.written: list[bytes] = []
        self.at = 0
        self.reader.feed_data((rec.banner + "\r\n").encode())
        self._release()

    def _release(self) -> None:
        end = self.pending[0][0] if self.pending else None
        self.reader.feed_data(_lines(self.rec, self.at, end))
        if end is None:
            self.reader.feed_eof()
        else:
            self.at = end

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self.pending.pop(0)
        self._release()

    def close(self) -> None:
        if not self.reader.at_eof():
            self.reader.feed_eof()


async def test_the_asyncio_client_runs_over_an_injected_opener() -> None:
    """No socket and no patching: the client takes the recorded connection as its opener."""
    [rec] = read_transcript(FIXTURES / "ami-originate.txt")
    peer = ReplayPeer(rec)

    async def opener() -> tuple[asyncio.StreamReader, ReplayPeer]:
        return peer.reader, peer

    client = AMIClient("recorded", 0, "dialer", "EXAMPLE-SECRET", opener=opener, reconnect_min_s=60)
    seen: list[str] = []
    client.add_listener(lambda e: seen.append(e.name))
    lost = asyncio.Event()
    client.add_disconnect_listener(lost.set)
    await client.start()
    try:
        await client.wait_ready(2.0)
        assert client.connected and client.banner is not None
        settings = await client.action("CoreSettings", timeout=2.0)
        assert settings.response.get("AsteriskVersion") == "22.10.1"
        originate = action_fields(rec.sent[2][1])
        fields = [(k, v) for k, v in originate.items() if k not in ("Action", "ActionID")]
        result = await client.action("Originate", fields, action_id="originate-3", timeout=2.0)
        assert result.response.ok and "OriginateResponse" in seen
        bye = await client.action("Logoff", action_id="logoff-4", timeout=2.0)
        assert bye.response.status == "Goodbye"
        await asyncio.wait_for(lost.wait(), 2.0)  # the recorded EOF: the gate closes with it
        assert not client.ready.is_set() and not client.connected
        assert b"Secret: EXAMPLE-SECRET" in peer.written[0]
    finally:
        await client.close()
