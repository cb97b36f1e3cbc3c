"""The sans-I/O AGI core against the recorded Asterisk 22 FastAGI sessions.

Each transcript (tests/fixtures/agi/, copied from /work/shared/asterisk/transcripts/) is
replayed: Asterisk's bytes are fed to ``AGIConnection`` - whole, byte by byte, and cut at
random points (hypothesis) - and our commands are sent where the recording sent them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.errors import LocalProtocolError, RemoteProtocolError
from ivr import agi
from ivr.agi import (
    NEED_DATA,
    AGIConnection,
    AGIEnvironment,
    Command,
    ConnectionClosed,
    HangupRequested,
    Reply,
    Status,
)
from ivr.errors import AGICommandError, CallerHungUp

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "agi"
LINE = re.compile(r"^\[\s*[\d.]+\] (<<|>>) ?(.*)$")


@dataclass
class Session:
    name: str
    steps: list[tuple[str, str]] = field(default_factory=list)  # ("<<"|">>", text)


def load_sessions(filename: str) -> list[Session]:
    sessions: list[Session] = []
    for raw in (FIXTURES / filename).read_text(encoding="utf-8").splitlines():
        if "** connection from" in raw:
            sessions.append(Session(f"{filename}#{len(sessions)}"))
            continue
        m = LINE.match(raw)
        if m and sessions:
            sessions[-1].steps.append((m.group(1), m.group(2)))
    return sessions


ALL = [s for f in sorted(p.name for p in FIXTURES.glob("fastagi-*.txt")) for s in load_sessions(f)]


def replay(session: Session, chunking: list[int] | None = None) -> list[object]:
    """Feed the session; return every event, with ('sent', line) markers between."""
    conn = AGIConnection()
    events: list[object] = []
    pending = bytearray()

    def flush() -> None:
        data = bytes(pending)
        pending.clear()
        sizes = iter(chunking or [])
        i = 0
        while i < len(data):
            n = max(1, next(sizes, len(data)))
            conn.receive_data(data[i : i + n])
            i += n
            while (ev := conn.next_event()) is not NEED_DATA:
                events.append(ev)

    for direction, text in session.steps:
        if direction == "<<":
            pending += text.encode() + b"\n"
        else:
            flush()
            conn.send(Command(text))
            events.append(("sent", text))
    flush()
    conn.receive_data(b"")
    while (ev := conn.next_event()) is not NEED_DATA:
        events.append(ev)
    return events


def replies(events: list[object]) -> list[Reply]:
    return [e for e in events if isinstance(e, Reply)]


def test_every_recorded_session_replays_in_sync() -> None:
    assert len(ALL) == 12
    for s in ALL:
        events = replay(s)
        env = events[0]
        assert isinstance(env, AGIEnvironment), s.name
        assert env.get("version") == "22.10.1"
        sent = [e for e in events if isinstance(e, tuple)]
        # one reply per command, in order (a session may end with a command in flight)
        assert len(replies(events)) in (len(sent), len(sent) - 1), s.name
        assert isinstance(events[-1], ConnectionClosed)


def test_environment_and_routing() -> None:
    env = replay(ALL[0])[0]
    assert isinstance(env, AGIEnvironment)
    assert env.script == "card_activation"
    assert env.channel == "Local/100@customer-00000000;1"
    assert env.language == "en"
    assert env.uniqueid == "017cafd9-d0b2-41e8-bdce-89a11e2dbfdd"
    assert env.get("accountcode") == ""  # "agi_accountcode: " with nothing after
    assert env.param("attempt", position=1) is None


def test_card_activation_replies() -> None:
    events = replay(ALL[0])
    rs = replies(events)
    assert rs[0] == Reply(Status.SUCCESS, result="0")
    assert rs[2].data == "Local/100@customer-00000000;1" and rs[2].code == 1
    assert rs[3].endpos == 3520 and rs[3].digit is None
    assert rs[4].digit == "1"  # WAIT FOR DIGIT result=49
    assert rs[5].result == "234"  # GET DATA digits


def commands_session() -> Session:
    return next(s for s in ALL if s.name.startswith("fastagi-commands.txt"))


def test_command_tour_reply_forms() -> None:
    rs = replies(replay(commands_session()))
    by = {r: r for r in rs}
    assert rs[1] == Reply(Status.SUCCESS, result="53", endpos=13760)  # interrupted by "5"
    assert rs[1].digit == "5"
    assert rs[2].result == "" and rs[2].timed_out  # "200 result= (timeout)"
    assert rs[3].result == "12" and rs[3].timed_out  # partial input
    assert rs[4].result == "1234" and not rs[4].timed_out
    assert rs[5].result == "98"  # '#' terminated
    assert rs[6].code == 0 and rs[6].digit is None  # WAIT FOR DIGIT, nothing
    assert rs[11].code == -2  # EXEC unknown application
    assert rs[12].failed and rs[12].endpos == 0  # missing prompt file
    assert rs[14].data == "bar baz"
    assert rs[15] == Reply(Status.SUCCESS, result="0")  # variable not set
    invalid = [r for r in rs if r.status is Status.INVALID]
    assert invalid and invalid[0].message == "Invalid or unknown command"
    usage = [r for r in rs if r.status is Status.USAGE]
    assert len(usage) == 2
    assert usage[0].message.startswith("Invalid command syntax")
    assert "Waits up to" in usage[0].usage and "520" not in usage[0].usage
    assert len(usage[1].usage.splitlines()) == 5  # five lines of STREAM FILE usage
    assert by  # all hashable (frozen)


def test_hangup_after_hangup_command_is_unsolicited() -> None:
    events = replay(commands_session())
    assert isinstance(events[-2], HangupRequested)
    assert events[-3] == Reply(Status.SUCCESS, result="1")


def test_hangup_before_reply_then_511() -> None:
    """dtmf_lost: STREAM FILE -> -1, GET DATA sent, bare HANGUP, then 511 for it."""
    s = next(s for s in ALL if s.name == "fastagi-card-activation.txt#2")
    events = replay(s)
    i = next(i for i, e in enumerate(events) if isinstance(e, HangupRequested))
    assert events[i - 1] == ("sent", "GET DATA silence/1 3000 10")
    dead = events[i + 1]
    assert isinstance(dead, Reply) and dead.status is Status.DEAD_CHANNEL
    with pytest.raises(CallerHungUp):
        agi.check(dead)


def test_hangup_with_no_command_outstanding() -> None:
    s = next(s for s in ALL if s.name == "fastagi-hangup-action.txt#2")
    events = replay(s)
    assert isinstance(events[3], HangupRequested)  # env, sent, reply, HANGUP
    assert replies(events)[1].status is Status.DEAD_CHANNEL
    assert replies(events)[2] == Reply(Status.SUCCESS, result="0")  # GET VARIABLE still works


def test_check_raises_for_510_and_520() -> None:
    with pytest.raises(AGICommandError) as e:
        agi.check(Reply(Status.INVALID, message="Invalid or unknown command"))
    assert e.value.code == 510
    assert agi.check(Reply(Status.SUCCESS, result="-1", endpos=0)).failed


@settings(max_examples=60, deadline=None)
@given(st.integers(0, len(ALL) - 1), st.lists(st.integers(1, 40), min_size=1, max_size=400))
def test_replay_cut_at_random_points_gives_same_events(index: int, chunks: list[int]) -> None:
    s = ALL[index]
    assert replay(s, chunks) == replay(s)


# --- hostile input ----------------------------------------------------------------------


def test_eof_in_header_is_an_event() -> None:
    conn = AGIConnection()
    conn.receive_data(b"agi_network: yes\nagi_chan")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed(in_header=True, partial=True)
    assert conn.next_event() is NEED_DATA  # and stays closed, no spin, no error


def test_eof_while_waiting_for_reply() -> None:
    conn = AGIConnection()
    conn.receive_data(b"agi_network: yes\n\n")
    assert isinstance(conn.next_event(), AGIEnvironment)
    conn.send(agi.answer())
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed(in_header=False, partial=False)


@pytest.mark.parametrize(
    "data",
    [b"GET / HTTP/1.1\r\n", b"\x16\x03\x01\x02\x00\x01\x00\n", b"agi_x\n", b"agi_a b: c\n"],
)
def test_garbage_header_is_remote_error(data: bytes) -> None:
    conn = AGIConnection()
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_endless_header_line_and_too_many_lines() -> None:
    conn = AGIConnection()
    conn.receive_data(b"agi_x: " + b"a" * (agi.MAX_LINE + 10))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    conn = AGIConnection()
    conn.receive_data(b"".join(b"agi_k%d: v\n" % i for i in range(agi.MAX_HEADER_LINES + 1)))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_unsolicited_reply_and_double_send() -> None:
    conn = AGIConnection()
    conn.receive_data(b"agi_network: yes\n\n200 result=0\n")
    assert isinstance(conn.next_event(), AGIEnvironment)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    conn = AGIConnection()
    conn.receive_data(b"agi_network: yes\n\n")
    conn.next_event()
    conn.send(agi.answer())
    with pytest.raises(LocalProtocolError):
        conn.send(agi.answer())


def test_utf8_split_across_reads() -> None:
    conn = AGIConnection()
    data = "agi_calleridname: 张三\n\n".encode()
    cut = data.index("张".encode()) + 1
    conn.receive_data(data[:cut])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(data[cut:])
    env = conn.next_event()
    assert isinstance(env, AGIEnvironment) and env.get("calleridname") == "张三"


def test_crlf_line_endings_accepted() -> None:
    conn = AGIConnection()
    conn.receive_data(b"agi_network: yes\r\n\r\n")
    assert isinstance(conn.next_event(), AGIEnvironment)


# --- commands and routing --------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "line"),
    [
        (agi.stream_file("beep"), 'STREAM FILE beep ""'),
        (agi.stream_file("dialer/x", agi.ESCAPE_ALL), 'STREAM FILE dialer/x "0123456789*#"'),
        (agi.get_data("beep", 5000, 10), "GET DATA beep 5000 10"),
        (agi.wait_for_digit(5000), "WAIT FOR DIGIT 5000"),
        (agi.set_variable("CARD_DIGITS", "1234"), 'SET VARIABLE CARD_DIGITS "1234"'),
        (agi.set_variable("FOO", "bar baz"), 'SET VARIABLE FOO "bar baz"'),
        (agi.set_variable("X", 'say "hi" \\o/'), r'SET VARIABLE X "say \"hi\" \\o/"'),
        (agi.set_variable("IVR_RESULT", ""), 'SET VARIABLE IVR_RESULT ""'),
        (agi.verbose("card_activation FastAGI start"), 'VERBOSE "card_activation FastAGI start" 1'),
        (agi.get_variable("CHANNEL"), "GET VARIABLE CHANNEL"),
        (agi.exec_app("Playback", "beep"), 'EXEC Playback "beep"'),
        (agi.hangup(), "HANGUP"),
    ],
)
def test_command_formatting(command: Command, line: str) -> None:
    assert command.format() == (line + "\n").encode()


def test_command_refuses_line_breaks() -> None:
    with pytest.raises(LocalProtocolError):
        agi.set_variable("X", "a\nHANGUP").format()
    with pytest.raises(LocalProtocolError):
        agi.quote("a\rb")


def test_quote_shapes() -> None:
    assert agi.quote("") == '""'
    assert agi.quote("plain") == "plain"
    assert agi.quote("two words") == '"two words"'


@pytest.mark.parametrize(
    ("script", "args", "flow", "attempt"),
    [
        ("card_activation?attempt=42", (), "card_activation", "42"),
        ("card_activation", ("42",), "card_activation", "42"),
        ("card_activation", ("attempt=42",), "card_activation", "42"),
        ("flows/notice?x=1&attempt=7", (), "notice", "7"),
        ("notice", (), "notice", None),
    ],
)
def test_routing_by_script_query_and_args(
    script: str, args: tuple[str, ...], flow: str, attempt: str | None
) -> None:
    lines = [f"agi_network_script: {script}", f"agi_request: agi://127.0.0.1:4573/{script}"]
    lines += [f"agi_arg_{i}: {a}" for i, a in enumerate(args, 1)]
    env = agi.parse_header(lines)
    assert env.script == flow
    assert env.param("attempt", position=1) == attempt


def test_process_agi_request_path() -> None:
    env = agi.parse_header(["agi_request: /usr/local/bin/ivr", "agi_arg_1: attempt=5"])
    assert env.script == "ivr" and env.param("attempt") == "5"


def test_transition_table_is_total_for_eof() -> None:
    for state in agi.State:
        assert (state, agi.Input.EOF) in agi.TRANSITIONS


def test_provisional_100_then_final_reply() -> None:
    conn = AGIConnection()
    conn.receive_data(b"agi_network: yes\n\n")
    conn.next_event()
    conn.send(agi.exec_app("Wait", "1"))
    conn.receive_data(b"100 result=0 Trying...\n200 result=0\n")
    assert conn.next_event() == agi.Provisional("result=0 Trying...")
    assert conn.next_event() == Reply(Status.SUCCESS, result="0")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(min_size=1, max_size=64),
            st.sampled_from(
                [
                    b"agi_network: yes\n",
                    b"\n",
                    b"200 result=1\n",
                    b"HANGUP\n",
                    b"520-x\n",
                    b"520 End\n",
                    b"511 x\n",
                ]
            ),
        ),
        max_size=30,
    ),
    st.lists(st.booleans(), max_size=30),
)
def test_arbitrary_bytes_never_crash_the_core(chunks: list[bytes], sends: list[bool]) -> None:
    """Whatever a peer sends: typed events or a RemoteProtocolError, never anything else,
    and end-of-stream always ends in ConnectionClosed."""
    conn = AGIConnection()
    try:
        for i, chunk in enumerate(chunks):
            conn.receive_data(chunk)
            while (ev := conn.next_event()) is not NEED_DATA:
                assert isinstance(ev, (AGIEnvironment, Reply, HangupRequested, agi.Provisional))
            if i < len(sends) and sends[i] and conn.state is agi.State.IDLE:
                conn.send(agi.answer())
        conn.receive_data(b"")
        events = []
        while (ev := conn.next_event()) is not NEED_DATA:
            events.append(ev)
        assert isinstance(events[-1], ConnectionClosed)
        assert conn.state is agi.State.CLOSED
    except RemoteProtocolError:
        pass
