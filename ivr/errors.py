"""The IVR's exceptions; they hang under ``dialer.errors.DialerError``.

    DialerError
    └── IvrError                  anything the IVR raises on purpose
        ├── CallerHungUp          the channel is gone (bare HANGUP, 511, result=-1 then EOF);
        │                         thrown into a flow so it unwinds and records a partial result
        ├── AGICommandError       Asterisk refused a command (510 unknown, 520 usage): our bug
        ├── FlowDefinitionError   a flow file is wrong (names file, node, problem); also a
        │                         ConfigError, so the CLI reports it like any bad setting
        ├── FlowRuntimeError      a flow reached a state its definition forbids (e.g. it would
        │                         disclose account data before confirming the right party)
        ├── HookError             a bank-side hook failed; the flow takes the node's error edge
        └── UnknownFlow           FastAGI / process AGI asked for a flow that does not exist

Protocol violations by the peer use ``dialer.errors.RemoteProtocolError`` (garbage, endless
header), and our own misuse of the AGI core ``LocalProtocolError``.
"""

from __future__ import annotations

from dialer.errors import ConfigError, DialerError


class IvrError(DialerError):
    """Base of the IVR's own errors."""


class CallerHungUp(IvrError):
    """The caller (or the AMI ``Hangup`` action) ended the channel."""


class AGICommandError(IvrError):
    """Asterisk answered 510 (unknown command) or 520 (bad syntax, with usage text)."""

    def __init__(self, code: int, message: str, usage: str = "") -> None:
        self.code = code
        self.usage = usage
        super().__init__(f"AGI {code}: {message}")


class FlowDefinitionError(IvrError, ConfigError):
    """A flow file does not validate."""


class FlowRuntimeError(IvrError):
    """A flow did something its definition forbids."""


class HookError(IvrError):
    """A bank-side hook raised or returned something unusable."""


class UnknownFlow(IvrError):
    """No flow by that name."""
