"""The project's exceptions, as one tree.

    DialerError
    ├── ConfigError            an operator's file or setting is wrong (names file, key, problem)
    │   └── SecretMissing      a secret is not in the environment nor in its *_FILE
    ├── StoreError             the database refused or is at the wrong schema
    ├── ImportRejected         a contact file could not be read at all (not: a bad row)
    ├── ComplianceError        an action would break a compliance rule (never dial past it)
    ├── ProtocolError          a peer spoke the wrong protocol
    │   ├── RemoteProtocolError    ... the other side's fault
    │   └── LocalProtocolError     ... our side's fault (a bug)
    ├── AMIError               an AMI action failed or timed out
    │   ├── AMIDisconnected    the AMI connection is gone
    │   └── AMIAuthFailed      the switch refused our login (wrong user or secret): not retried
    ├── IllegalTransition      a state machine was fed an event it has no transition for
    ├── WorkerConflict         another live `dialer run` already has this worker id
    └── AccessDenied           a console user may not do this (their role, their campaigns)
        └── LoginRefused       wrong name or password, a disabled or a locked-out account

IVR exceptions (``ivr.errors``) and messaging exceptions (``dialer.messaging.errors``: templates,
SMS gateway, SMTP) hang under ``DialerError`` as well.
"""

from __future__ import annotations


class DialerError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(DialerError):
    """An operator's file or setting is wrong."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ""
        if file:
            where += f"{file}: "
        if key:
            where += f"{key}: "
        super().__init__(f"{where}{message}")


class SecretMissing(ConfigError):
    """A secret is not set in the environment or its file."""


class StoreError(DialerError):
    """The store refused an operation."""


class ImportRejected(DialerError):
    """A whole input file could not be read (bad rows are reported, not raised)."""


class ComplianceError(DialerError):
    """Dialling would break a compliance rule."""


class ProtocolError(DialerError):
    """A peer broke the protocol."""


class RemoteProtocolError(ProtocolError):
    """The remote peer sent something invalid."""


class LocalProtocolError(ProtocolError):
    """We tried to send something invalid (a bug on our side)."""


class AMIError(DialerError):
    """An AMI action failed or timed out."""


class AMIDisconnected(AMIError):
    """The AMI connection is gone."""


class AMIAuthFailed(AMIError):
    """The switch refused the login. Never retried: a switch with fail2ban would lock the
    dialer's address out after a few tries, and a wrong secret does not heal by itself."""


class IllegalTransition(DialerError):
    """A state machine got an event it has no transition for."""

    def __init__(self, machine: str, state: object, event: object) -> None:
        self.machine = machine
        self.state = state
        self.event = event
        super().__init__(f"{machine}: no transition from {state!r} on {event!r}")


class WorkerConflict(DialerError):
    """Another live process already runs under this worker id."""


class AccessDenied(DialerError):
    """A console user may not do this."""


class LoginRefused(AccessDenied):
    """A sign-in failed (the message never says whether the name exists)."""


def describe_db_error(exc: BaseException) -> str:
    """One line about a statement the database refused that carries no customer's data: the
    driver's error class and the first line of its message (PostgreSQL's DETAIL line, which
    quotes key values such as a phone number, is the second; the engine hides parameters)."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [""])[0]
    return f"{type(orig).__name__}: {first[:200]}"
