"""Console authentication: one API token, as a bearer header or a derived session cookie.

The token comes from ``DIALER_API_TOKEN``. The page asks for it once and posts it to
``/api/login``; the answer sets an HttpOnly, SameSite=Strict cookie whose value is an HMAC
derived from the token - never the token itself - so a leaked cookie does not reveal the token
and rotating the token ends every session. All comparisons are constant-time over digests of
equal length.
"""

from __future__ import annotations

import hashlib
import hmac
import re

COOKIE_NAME = "dialer_session"
_SESSION_LABEL = b"dialer-console-session-v1"
_COMPARE_LABEL = b"dialer-console-compare-v1"
_ACTOR_OK = re.compile(r"[^A-Za-z0-9_.@-]")


class TokenAuth:
    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the console needs a non-empty API token")
        self._token_digest = self._digest(token)
        self.session_value = hmac.new(token.encode(), _SESSION_LABEL, hashlib.sha256).hexdigest()
        self._session_digest = self._digest(self.session_value)

    @staticmethod
    def _digest(value: str) -> bytes:
        # a fixed-length value to compare, so neither length nor prefix leaks through timing
        return hmac.new(_COMPARE_LABEL, value.encode("utf-8", "replace"), hashlib.sha256).digest()

    def check_token(self, candidate: str) -> bool:
        return hmac.compare_digest(self._digest(candidate), self._token_digest)

    def check_session(self, candidate: str) -> bool:
        return hmac.compare_digest(self._digest(candidate), self._session_digest)

    def check_authorization(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and self.check_token(value.strip())


def actor_name(raw: str | None, via: str) -> str:
    """``console:<name>`` for the audit trail; the name is what the page says, cleaned."""
    name = _ACTOR_OK.sub("", raw or "")[:40]
    return f"console:{name}" if name else f"console:{via}"
