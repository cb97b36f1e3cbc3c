"""Console authentication: one API token, as a bearer header or a server-side session.

The token comes from ``DIALER_API_TOKEN`` and must be strong (``check_token_strength``: the
console refuses to start with a weak one). The page posts it once to ``/api/login``; the
answer sets an HttpOnly, SameSite=Strict cookie holding a random session id - never the token,
nor anything derived from it - that the server keeps in ``SessionStore``: sign-out revokes it,
it expires after ``SESSION_TTL_S`` (and ``SESSION_IDLE_S`` unused), and a restart ends every
session. Token comparisons are constant-time over digests of equal length.

Guessing is throttled per client address (``LoginThrottle``): after ``max_failures`` wrong
tokens (at the login, or as a bearer header or a session cookie) the address is locked out
for ``lockout_s``, doubling with each further lock-out up to ``lockout_max_s``; attempts in
flight count as failures until they succeed, so parallel guesses are held to the same limit.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dialer.errors import ConfigError

COOKIE_NAME = "dialer_session"
_COMPARE_LABEL = b"dialer-console-compare-v1"
_ACTOR_OK = re.compile(r"[^A-Za-z0-9_.@-]")

#: a token must take at least 10**MIN_GUESSES_LOG10 guesses by zxcvbn's estimate (a random
#: ``secrets.token_urlsafe(16)`` takes 10**22; "test-console-token-1234" 10**17)
MIN_GUESSES_LOG10 = 21.0
MIN_TOKEN_CHARS = 20
SESSION_TTL_S = 12 * 3600.0
SESSION_IDLE_S = 2 * 3600.0
MAX_SESSIONS = 1000


def check_token_strength(token: str, *, name: str = "DIALER_API_TOKEN") -> None:
    """Raise ``ConfigError`` (one line) unless ``token`` is long and hard to guess (zxcvbn's
    estimate, which sees through words, dates, keyboard runs and repeats)."""
    from zxcvbn import zxcvbn

    guesses = float(zxcvbn(token[:100])["guesses_log10"]) if token else 0.0
    if len(token) < MIN_TOKEN_CHARS or guesses < MIN_GUESSES_LOG10:
        raise ConfigError(
            f"{name} is too weak ({len(token)} characters, about 10^{guesses:.0f} guesses; "
            f"need {MIN_TOKEN_CHARS}+ characters and 10^{MIN_GUESSES_LOG10:.0f}): generate one "
            "with python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"
        )


@dataclass
class _Session:
    created: float
    seen: float
    user: Any = None  # who signed in (``dialer.lists.users.UserView``); None: the API token
    checked: float = 0.0  # when ``user`` was last confirmed against the store


@dataclass
class SessionStore:
    """Server-side sessions: random ids, kept only as digests; revocable."""

    clock: Callable[[], float] = time.monotonic
    ttl_s: float = SESSION_TTL_S
    idle_s: float = SESSION_IDLE_S
    max_sessions: int = MAX_SESSIONS

    def __post_init__(self) -> None:
        self._sessions: OrderedDict[bytes, _Session] = OrderedDict()

    @staticmethod
    def _key(sid: str) -> bytes:
        return hashlib.sha256(sid.encode("utf-8", "replace")).digest()

    def create(self, user: Any = None) -> str:
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        self._sessions[self._key(sid)] = _Session(now, now, user, now)
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)  # the oldest sign-in goes first
        return sid

    def check(self, sid: str) -> bool:
        key = self._key(sid)
        s = self._sessions.get(key)
        if s is None:
            return False
        now = self.clock()
        if now - s.created > self.ttl_s or now - s.seen > self.idle_s:
            del self._sessions[key]
            return False
        s.seen = now
        return True

    def get(self, sid: str) -> _Session | None:
        """The live session behind ``sid`` (call ``check`` first)."""
        return self._sessions.get(self._key(sid))

    def revoke_user(self, username: str) -> int:
        """End every session of one user (disabled, or their password changed)."""
        keys = [
            k for k, s in self._sessions.items() if getattr(s.user, "username", None) == username
        ]
        for k in keys:
            del self._sessions[k]
        return len(keys)

    def revoke(self, sid: str) -> bool:
        return self._sessions.pop(self._key(sid), None) is not None

    def __len__(self) -> int:
        return len(self._sessions)


@dataclass(frozen=True)
class ThrottleLimits:
    max_failures: int = 5  # wrong tokens from one address before it is locked out
    window_s: float = 300.0  # failures older than this are forgotten
    lockout_s: float = 60.0  # the first lock-out; each further one doubles
    lockout_max_s: float = 900.0
    max_addresses: int = 10_000  # state kept for at most this many addresses


@dataclass
class _Address:
    failures: list[float] = field(default_factory=list)
    pending: int = 0
    locked_until: float = 0.0
    lockouts: int = 0


@dataclass
class LoginThrottle:
    limits: ThrottleLimits = field(default_factory=ThrottleLimits)
    clock: Callable[[], float] = time.monotonic
    refused: int = 0  # attempts answered 429

    def __post_init__(self) -> None:
        self._addresses: OrderedDict[str, _Address] = OrderedDict()

    def _state(self, address: str) -> _Address:
        st = self._addresses.get(address)
        if st is None:
            st = self._addresses[address] = _Address()
            while len(self._addresses) > self.limits.max_addresses:
                self._addresses.popitem(last=False)
        else:
            self._addresses.move_to_end(address)
        horizon = self.clock() - self.limits.window_s
        st.failures = [t for t in st.failures if t > horizon]
        return st

    def begin(self, address: str) -> float:
        """Before checking a credential: 0 to go ahead (it counts as a failure until
        ``succeeded``), else the seconds until the address may try again."""
        st = self._state(address)
        now = self.clock()
        if st.locked_until > now:
            self.refused += 1
            return st.locked_until - now
        if len(st.failures) + st.pending >= self.limits.max_failures:
            self._lock(st, now)
            self.refused += 1
            return st.locked_until - now
        st.pending += 1
        return 0.0

    def failed(self, address: str) -> None:
        st = self._state(address)
        st.pending = max(0, st.pending - 1)
        now = self.clock()
        st.failures.append(now)
        if len(st.failures) >= self.limits.max_failures:
            self._lock(st, now)

    def succeeded(self, address: str) -> None:
        st = self._state(address)
        st.pending = max(0, st.pending - 1)
        st.failures.clear()
        st.lockouts = 0

    def _lock(self, st: _Address, now: float) -> None:
        if st.locked_until > now:
            return
        lim = self.limits
        st.locked_until = now + min(lim.lockout_max_s, lim.lockout_s * 2**st.lockouts)
        st.lockouts += 1
        st.failures.clear()


class TokenAuth:
    def __init__(
        self,
        token: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        throttle: ThrottleLimits | None = None,
        check_strength: bool = True,
    ) -> None:
        if not token:
            raise ConfigError("the console needs a non-empty API token (DIALER_API_TOKEN)")
        if check_strength:
            check_token_strength(token)
        self._token_digest = self._digest(token)
        self.sessions = SessionStore(clock)
        self.throttle = LoginThrottle(throttle or ThrottleLimits(), clock)

    @staticmethod
    def _digest(value: str) -> bytes:
        # a fixed-length value to compare, so neither length nor prefix leaks through timing
        return hmac.new(_COMPARE_LABEL, value.encode("utf-8", "replace"), hashlib.sha256).digest()

    def check_token(self, candidate: str) -> bool:
        return hmac.compare_digest(self._digest(candidate), self._token_digest)

    def check_session(self, candidate: str) -> bool:
        return self.sessions.check(candidate)

    def check_authorization(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and self.check_token(value.strip())


def actor_name(raw: str | None, via: str) -> str:
    """``console:<name>`` for the audit trail; the name is what the page says, cleaned."""
    name = _ACTOR_OK.sub("", raw or "")[:40]
    return f"console:{name}" if name else f"console:{via}"
