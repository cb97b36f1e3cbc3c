"""The sans-I/O AMI framing against recorded Asterisk bytes, split every which way."""

from __future__ import annotations

import pytest
from ami_replay import fixture
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.errors import LocalProtocolError, RemoteProtocolError
from dialer.telephony.ami.framing import AMIFraming
from dialer.telephony.ami.messages import Banner, Closed, Event, Headers, Response, serialize_action
from dialer.telephony.ami.transcript import read_transcript

CHINESE_NAME = "张伟明"  # 3 characters, 9 UTF-8 bytes


def recorded(name: str) -> bytes:
    return read_transcript(fixture(name))[0].received_bytes()


def with_chinese_name(data: bytes) -> bytes:
    """The recorded originate with the customer's name in Chinese (as our campaigns send it)."""
    return data.replace(b"CallerIDName: Dialer", f"CallerIDName: {CHINESE_NAME}".encode())


ORIGINATE = with_chinese_name(recorded("ami-originate.txt"))
QUEUE = recorded("ami-queue.txt")


def frame_all(data: bytes, cuts: list[int]) -> list[object]:
    f = AMIFraming()
    out: list[object] = []
    prev = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        out += f.receive_data(data[prev:cut]) if cut > prev else []
        prev = cut
    return out + f.receive_data(b"")


def test_whole_transcript_parses() -> None:
    msgs = frame_all(ORIGINATE, [])
    assert msgs[0] == Banner("Asterisk Call Manager/11.0.0")
    assert msgs[-1] == Closed(clean=True)
    events = [m for m in msgs if isinstance(m, Event)]
    responses = [m for m in msgs if isinstance(m, Response)]
    assert [r.action_id for r in responses] == [
        "login-1",
        "coresettings-2",
        "originate-3",
        "logoff-4",
    ]
    assert responses[-1].status == "Goodbye"
    names = {e.get("CallerIDName") for e in events}
    assert CHINESE_NAME in names
    assert "\ufffd" not in "".join(str(e.headers) for e in events)
    # the blank value is kept as an empty string, not dropped
    assert responses[1].headers["SystemName"] == ""


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(ORIGINATE)), max_size=60))
def test_any_split_gives_the_same_messages(cuts: list[int]) -> None:
    assert frame_all(ORIGINATE, cuts) == frame_all(ORIGINATE, [])


def test_chinese_name_split_inside_every_character() -> None:
    whole = frame_all(ORIGINATE, [])
    start = ORIGINATE.index(CHINESE_NAME.encode())
    for offset in range(1, len(CHINESE_NAME.encode())):
        assert frame_all(ORIGINATE, [start + offset]) == whole


def test_byte_at_a_time() -> None:
    f = AMIFraming()
    out: list[object] = []
    for i in range(len(QUEUE)):
        out += f.receive_data(QUEUE[i : i + 1])
    out += f.receive_data(b"")
    assert out == frame_all(QUEUE, [])


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_every_recorded_transcript_survives_random_splits(data: st.DataObject) -> None:
    name = data.draw(
        st.sampled_from(
            ["ami-failures.txt", "ami-amd.txt", "ami-extras.txt", "ami-resync-status.txt"]
        )
    )
    raw = recorded(name)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=40))
    assert frame_all(raw, cuts) == frame_all(raw, [])


def test_repeated_variable_headers_are_all_kept() -> None:
    f = AMIFraming(expect_banner=False)
    [msg] = f.receive_data(
        b"Event: Status\r\nChannel: X\r\nVariable: A=1\r\nVariable: B=\xe6\x9d\x8e\r\n\r\n"
    )
    assert isinstance(msg, Event)
    assert msg.headers["Variable"] == "A=1"
    assert msg.headers.getall("variable") == ("A=1", "B=李")
    assert msg.headers.variables() == {"A": "1", "B": "李"}
    assert list(msg.headers) == ["Event", "Channel", "Variable"]
    with pytest.raises(TypeError):
        msg.headers["X"] = "y"  # type: ignore[index]


def test_bare_newlines_and_stray_blank_lines() -> None:
    f = AMIFraming(expect_banner=False)
    msgs = f.receive_data(b"\r\n\nResponse: Success\nActionID: a\n\n\r\nEvent: X\r\n\r\n")
    assert [type(m) for m in msgs] == [Response, Event]


def test_legacy_follows_body_with_blank_line() -> None:
    f = AMIFraming(expect_banner=False)
    body = (
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: c1\r\n"
        b"line one\r\n\r\nline: three\r\n--END COMMAND--\r\n\r\nEvent: After\r\n\r\n"
    )
    msgs = []
    for i in range(len(body)):
        msgs += f.receive_data(body[i : i + 1])
    assert isinstance(msgs[0], Response) and msgs[0].status == "Follows"
    assert msgs[0].output == ("line one",)
    assert msgs[0].headers.get("line") == "three"
    assert isinstance(msgs[1], Event) and msgs[1].name == "After"


def test_end_of_stream_mid_message_is_unclean() -> None:
    f = AMIFraming()
    assert f.receive_data(b"Asterisk Call Manager/11.0.0\r\nEvent: Hangup\r\nCau") == [
        Banner("Asterisk Call Manager/11.0.0")
    ]
    [closed] = f.receive_data(b"")
    assert closed == Closed(clean=False, pending_bytes=len(b"Event: Hangup\r\nCau"))
    with pytest.raises(LocalProtocolError):
        f.receive_data(b"more")


def test_not_an_ami_peer() -> None:
    with pytest.raises(RemoteProtocolError):
        AMIFraming().receive_data(b"HTTP/1.1 400 Bad Request\r\n")


def test_oversized_message_is_the_peers_fault() -> None:
    f = AMIFraming(expect_banner=False, max_message_bytes=100)
    with pytest.raises(RemoteProtocolError):
        f.receive_data(b"Event: X\r\n" + b"A: " + b"x" * 200)


def test_invalid_utf8_is_replaced_not_dropped() -> None:
    [msg] = AMIFraming(expect_banner=False).receive_data(b"Event: X\r\nName: a\xffb\r\n\r\n")
    assert isinstance(msg, Event) and msg.get("Name") == "a\ufffdb"


def test_serialize_action_round_trips_and_refuses_injection() -> None:
    raw = serialize_action(
        "Originate", "o-1", [("Variable", "DIALER_ATTEMPT=7"), ("Variable", "NAME=张伟明")]
    )
    assert raw.endswith(b"\r\n\r\n")
    [msg] = AMIFraming(expect_banner=False).receive_data(raw)
    assert msg.headers.getall("Variable") == ("DIALER_ATTEMPT=7", "NAME=张伟明")  # type: ignore[union-attr]
    with pytest.raises(LocalProtocolError):
        serialize_action("Originate", "o-2", [("Variable", "X=1\r\nAction: Logoff")])


def test_headers_equality_and_hash() -> None:
    a = Headers([("A", "1"), ("a", "2")])
    assert a["A"] == "1" and a.getall("A") == ("1", "2") and len(a) == 1
    assert a == Headers([("A", "1"), ("a", "2")]) and hash(a) == hash(Headers(a.pairs))


def test_event_timestamp_header() -> None:
    """``timestampevents = yes``: every recorded event Asterisk raised carries its stamp, read
    as epoch seconds (not the ``FullyBooted`` greeting of a login); list items of an action
    (no ``Privilege``) carry none; a broken stamp is no stamp."""
    events = [m for m in frame_all(QUEUE, []) if isinstance(m, Event)]
    raised = [e for e in events if "Privilege" in e.headers and e.name != "FullyBooted"]
    stamps = [e.timestamp for e in raised]
    assert len(stamps) > 50 and all(isinstance(t, float) for t in stamps)
    assert stamps == sorted(stamps)  # raised in order
    assert raised[0].timestamp == float(raised[0].headers["Timestamp"])
    listed = [e for e in events if "Privilege" not in e.headers]
    assert listed and all(e.timestamp is None for e in listed)

    def stamped(value: str) -> float | None:
        f = AMIFraming(expect_banner=False)
        wire = f"Event: Newexten\r\nTimestamp: {value}\r\nChannel: Local/x\r\n\r\n".encode()
        (msg,) = f.receive_data(wire)
        assert isinstance(msg, Event)
        return msg.timestamp

    assert stamped("1796013167.009990") == pytest.approx(1796013167.00999)
    assert stamped("1796013167") == 1796013167.0
    assert [stamped(v) for v in ("", "soon", "nan", "inf", "1,5")] == [None] * 5
