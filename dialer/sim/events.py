"""AMI messages as the simulated PBX emits them: frozen dataclasses plus Asterisk's tables."""

from __future__ import annotations

import enum
from dataclasses import dataclass

Fields = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class AmiEvent:
    """One AMI event. ``fields`` exclude ``Event``/``Privilege``/``Timestamp``."""

    name: str
    privilege: str
    fields: Fields
    timestamp: float
    #: read class that gates delivery (``call``, ``dialplan``, ``agi``, ``dtmf``, ``agent``, ...)
    klass: str = "call"

    def get(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.fields:
            if k == key:
                return v
        return default

    def as_dict(self) -> dict[str, str]:
        return {"Event": self.name, **dict(self.fields)}


class ChannelState(enum.IntEnum):
    DOWN = 0
    RSRVD = 1
    OFFHOOK = 2
    DIALING = 3
    RING = 4
    RINGING = 5
    UP = 6
    BUSY = 7


STATE_DESC = {
    ChannelState.DOWN: "Down",
    ChannelState.RSRVD: "Rsrvd",
    ChannelState.OFFHOOK: "OffHook",
    ChannelState.DIALING: "Dialing",
    ChannelState.RING: "Ring",
    ChannelState.RINGING: "Ringing",
    ChannelState.UP: "Up",
    ChannelState.BUSY: "Busy",
}


class Cause(enum.IntEnum):
    """Q.850 hang-up causes the recordings show."""

    UNKNOWN = 0
    UNALLOCATED = 1
    NORMAL_CLEARING = 16
    USER_BUSY = 17
    NO_USER_RESPONSE = 18
    NO_ANSWER = 19
    CALL_REJECTED = 21
    NORMAL_UNSPECIFIED = 31
    CONGESTION = 34
    INTERWORKING = 127


CAUSE_TEXT = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    21: "Call Rejected",
    26: "Answered elsewhere",
    27: "Destination out of order",
    31: "Normal, unspecified",
    34: "Circuit/channel congestion",
    38: "Network out of order",
    127: "Interworking, unspecified",
}


def cause_text(cause: int) -> str:
    return CAUSE_TEXT.get(cause, "Unknown")


class OriginateReason(enum.IntEnum):
    """``OriginateResponse`` ``Reason``: the last control frame, not a cause."""

    FAILED = 0
    RING_TIMEOUT = 3
    ANSWERED = 4
    BUSY = 5
    CONGESTION = 8


#: ``SoftHangupRequest`` cause values Asterisk prints (AST_SOFTHANGUP_* bit masks).
SOFTHANGUP_DEV = 1
SOFTHANGUP_EXPLICIT = 16
SOFTHANGUP_AGI = 32  # recorded after the AGI ``HANGUP`` command


def format_message(pairs: list[tuple[str, str]] | Fields) -> bytes:
    """Asterisk's framing: ``Key: Value`` lines with CRLF, a blank line at the end."""
    out = "".join(f"{k}: {v}\r\n" for k, v in pairs)
    return (out + "\r\n").encode("utf-8")


def format_event(ev: AmiEvent, timestamps: bool = True) -> bytes:
    pairs: list[tuple[str, str]] = [("Event", ev.name), ("Privilege", ev.privilege)]
    if timestamps:
        pairs.append(("Timestamp", f"{ev.timestamp:.6f}"))
    pairs.extend(ev.fields)
    return format_message(pairs)


UNKNOWN = "<unknown>"


class ChannelHungup(Exception):
    """Raised inside an application when its channel has been hung up."""
