"""Console users: who may sign in, with which role, bound to which phone.

Passwords are hashed with Argon2id (``argon2-cffi``; the hasher is injected, so tests use a
cheap profile) and checked in constant time; a name that does not exist costs the same as a
wrong password, and the refusal never says which it was. After ``LOCKOUT_AFTER`` failed
sign-ins in a row an account waits ``LOCKOUT_S`` (an audit row says so); a good sign-in or a
new password clears the count. Every change is audited under the actor who made it.

Roles (``Role``): an **agent** works from the desktop, bound to their queue member interface;
a **supervisor** runs campaigns (their ``campaigns``, or every one when the list is empty); an
**admin** does everything, users included.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from dialer.audit import AuditAction
from dialer.errors import ConfigError
from dialer.store.models import AuditEntry
from dialer.store.people import AppUser

LOCKOUT_AFTER = 5
LOCKOUT_S = 900.0
MIN_PASSWORD_CHARS = 10
#: zxcvbn's estimate of guesses a password must need (10^8: not a word, a date or a run)
MIN_PASSWORD_GUESSES_LOG10 = 8.0
_USERNAME = re.compile(r"[a-z][a-z0-9_.-]{1,39}")
_INTERFACE = re.compile(r"[A-Za-z0-9]+/[A-Za-z0-9_.@+/-]{1,120}")


class Role(enum.StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_RANK = {Role.AGENT: 0, Role.SUPERVISOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class UserView:
    """A user as the console and the CLI see one (never the hash)."""

    id: int
    username: str
    display_name: str | None
    role: Role
    interface: str | None
    campaigns: tuple[str, ...]
    language: str
    disabled: bool
    locked_until: dt.datetime | None

    def may_see_campaign(self, campaign: str) -> bool:
        """Admins see every campaign; others theirs (an empty list: every campaign)."""
        return self.role is Role.ADMIN or not self.campaigns or campaign in self.campaigns

    def to_json(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role.value,
            "interface": self.interface,
            "campaigns": list(self.campaigns),
            "language": self.language,
            "disabled": self.disabled,
            "locked_until": self.locked_until.isoformat() if self.locked_until else None,
        }


def view_of(row: AppUser) -> UserView:
    return UserView(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        role=Role(row.role),
        interface=row.interface,
        campaigns=tuple(row.campaigns or ()),
        language=row.language,
        disabled=row.disabled,
        locked_until=row.locked_until,
    )


class Passwords:
    """Hashing and checking, with one hasher (Argon2id, the library's default profile)."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    def _unknown(self) -> str:
        """Checked against when the name is unknown: that costs what a wrong password costs."""
        if self._dummy is None:
            self._dummy = self.hasher.hash("not-a-password-of-anyone")
        return self._dummy

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def check(self, stored: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored or self._unknown(), password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False


def check_password_strength(password: str, username: str) -> None:
    """``ConfigError`` (one line) unless the password is long and hard to guess."""
    from zxcvbn import zxcvbn

    if len(password) < MIN_PASSWORD_CHARS:
        raise ConfigError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    guesses = float(zxcvbn(password[:100], user_inputs=[username])["guesses_log10"])
    if guesses < MIN_PASSWORD_GUESSES_LOG10:
        raise ConfigError(
            f"that password is too easy to guess (about 10^{guesses:.0f} guesses; "
            f"need 10^{MIN_PASSWORD_GUESSES_LOG10:.0f}): use a few unrelated words"
        )


def _check_fields(username: str, interface: str | None, role: Role) -> None:
    if not _USERNAME.fullmatch(username):
        raise ConfigError(f"user name {username!r}: 2-40 of a-z 0-9 _ . -, starting with a letter")
    if interface is not None and not _INTERFACE.fullmatch(interface):
        raise ConfigError(
            f"interface {interface!r}: a queue member interface such as PJSIP/1001 "
            "or Local/1001@agents"
        )
    if role is Role.AGENT and interface is None:
        raise ConfigError("an agent needs --interface (the queue member interface of the phone)")


def _audit(s: Session, actor: str, action: AuditAction, **detail: Any) -> None:
    s.add(AuditEntry(actor=actor[:64], action=action, detail=detail))


def _row(s: Session, username: str) -> AppUser:
    row = s.scalars(select(AppUser).where(AppUser.username == username)).one_or_none()
    if row is None:
        raise ConfigError(f"no user named {username!r}")
    return row


def add_user(
    s: Session,
    username: str,
    role: Role,
    password: str,
    *,
    actor: str,
    passwords: Passwords,
    interface: str | None = None,
    campaigns: Sequence[str] = (),
    display_name: str | None = None,
    language: str = "zh",
) -> UserView:
    _check_fields(username, interface, role)
    check_password_strength(password, username)
    if s.scalars(select(AppUser.id).where(AppUser.username == username)).first() is not None:
        raise ConfigError(f"user {username!r} exists already")
    if interface is not None:
        taken = s.scalars(select(AppUser.username).where(AppUser.interface == interface)).first()
        if taken is not None:
            raise ConfigError(f"interface {interface} is bound to user {taken!r} already")
    if language not in ("zh", "en"):
        raise ConfigError("language is zh or en")
    row = AppUser(
        username=username,
        role=role.value,
        password_hash=passwords.hash(password),
        interface=interface,
        campaigns=list(campaigns),
        display_name=display_name,
        language=language,
    )
    s.add(row)
    s.flush()
    _audit(s, actor, AuditAction.USER_ADD, user=username, role=role.value, interface=interface)
    return view_of(row)


#: Keep what the user has (``update_user``'s "not given").
KEEP: Any = object()


def update_user(
    s: Session,
    username: str,
    *,
    actor: str,
    role: Role | None = None,
    interface: str | None = KEEP,
    campaigns: Sequence[str] | None = None,
    display_name: str | None = KEEP,
    language: str | None = None,
) -> UserView:
    """Change a user's role, phone, campaigns (``[]``: every campaign), name or language,
    under the rules of ``add_user``; audited with what changed."""
    row = _row(s, username)
    new_role = role or Role(row.role)
    new_iface = row.interface if interface is KEEP else (interface or None)
    _check_fields(username, new_iface, new_role)
    if new_iface is not None and new_iface != row.interface:
        taken = s.scalars(
            select(AppUser.username).where(
                AppUser.interface == new_iface, AppUser.username != username
            )
        ).first()
        if taken is not None:
            raise ConfigError(f"interface {new_iface} is bound to user {taken!r} already")
    if language is not None and language not in ("zh", "en"):
        raise ConfigError("language is zh or en")
    if campaigns is not None and not all(isinstance(c, str) and c for c in campaigns):
        raise ConfigError("campaigns is a list of campaign names")
    before = view_of(row)
    row.role = new_role.value
    row.interface = new_iface
    if campaigns is not None:
        row.campaigns = sorted(set(campaigns))
    if display_name is not KEEP:
        row.display_name = display_name or None
    if language is not None:
        row.language = language
    s.flush()
    after = view_of(row)
    changed = {
        k: v
        for k, v in after.to_json().items()
        if v != before.to_json()[k]
        and k in ("role", "interface", "campaigns", "display_name", "language")
    }
    _audit(s, actor, AuditAction.USER_UPDATE, user=username, **changed)
    return after


def list_users(s: Session) -> list[UserView]:
    return [view_of(r) for r in s.scalars(select(AppUser).order_by(AppUser.username))]


def get_user(s: Session, username: str) -> UserView:
    return view_of(_row(s, username))


def set_disabled(s: Session, username: str, disabled: bool, *, actor: str) -> UserView:
    row = _row(s, username)
    row.disabled = disabled
    action = AuditAction.USER_DISABLE if disabled else AuditAction.USER_ENABLE
    _audit(s, actor, action, user=username)
    return view_of(row)


def set_password(
    s: Session, username: str, password: str, *, actor: str, passwords: Passwords
) -> UserView:
    row = _row(s, username)
    check_password_strength(password, username)
    row.password_hash = passwords.hash(password)
    row.password_changed_at = dt.datetime.now(dt.UTC)
    row.failed_logins = 0
    row.locked_until = None
    _audit(s, actor, AuditAction.USER_PASSWORD, user=username)
    return view_of(row)


@dataclass(frozen=True)
class SignIn:
    """What a sign-in came to: the user, or why not (the refusal's rows are written too, so
    the caller commits either way)."""

    user: UserView | None
    refused: str = ""


def authenticate(
    s: Session,
    username: str,
    password: str,
    *,
    now: dt.datetime,
    passwords: Passwords,
    address: str = "?",
) -> SignIn:
    """Check a sign-in; failures and lock-outs are counted and audited."""
    row = s.scalars(select(AppUser).where(AppUser.username == username)).one_or_none()
    ok = passwords.check(row.password_hash if row is not None else None, password)
    wrong = SignIn(None, "wrong user name or password")
    if row is None:
        _audit(s, "anonymous", AuditAction.USER_LOGIN_FAILED, user=username[:40], address=address)
        return wrong
    if row.locked_until is not None and row.locked_until > now:
        _audit(s, row.username, AuditAction.USER_LOGIN_FAILED, reason="locked", address=address)
        return SignIn(None, "this account is locked after repeated failures: try again later")
    if not ok:
        row.failed_logins += 1
        _audit(s, row.username, AuditAction.USER_LOGIN_FAILED, address=address)
        if row.failed_logins >= LOCKOUT_AFTER:
            row.locked_until = now + dt.timedelta(seconds=LOCKOUT_S)
            row.failed_logins = 0
            _audit(s, row.username, AuditAction.USER_LOCKED, until=row.locked_until.isoformat())
        return wrong
    if row.disabled:
        _audit(s, row.username, AuditAction.USER_LOGIN_FAILED, reason="disabled", address=address)
        return SignIn(None, "this account is disabled")
    row.failed_logins = 0
    row.locked_until = None
    row.last_login_at = now
    _audit(s, row.username, AuditAction.USER_LOGIN, address=address)
    return SignIn(view_of(row))


def is_active(s: Session, username: str) -> bool:
    """Still allowed in (a disabled account's sessions end at its next request)."""
    row = s.scalars(select(AppUser).where(AppUser.username == username)).one_or_none()
    return row is not None and not row.disabled


__all__ = [
    "LOCKOUT_AFTER",
    "LOCKOUT_S",
    "Passwords",
    "Role",
    "SignIn",
    "UserView",
    "add_user",
    "authenticate",
    "check_password_strength",
    "get_user",
    "is_active",
    "list_users",
    "set_disabled",
    "set_password",
    "update_user",
]
