"""Customers' data: keyed hashes and masks.

Sensitive values (ID digits, typed verification digits) are stored only as
``hmac-sha256`` keyed by ``DIALER_SECRET_KEY``; comparisons are constant-time. Card numbers
and phone numbers are masked before they reach a log line or a page.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

from dialer.settings import get_secret

_PREFIX = "h1:"  # version tag, so the scheme can change without ambiguity


def _key(env: Mapping[str, str] | None = None) -> bytes:
    secret = get_secret("secret_key", env)
    assert secret is not None
    return secret.get_secret_value().encode("utf-8")


def keyed_hash(value: str, *, purpose: str, env: Mapping[str, str] | None = None) -> str:
    """HMAC of ``value`` under the store's key; ``purpose`` (e.g. the field name) is mixed in
    so the same digits hash differently in different fields."""
    mac = hmac.new(_key(env), f"{purpose}\x00{value}".encode(), hashlib.sha256)
    return _PREFIX + mac.hexdigest()


def matches_hash(
    value: str, stored: str, *, purpose: str, env: Mapping[str, str] | None = None
) -> bool:
    """Constant-time check of typed digits against a stored keyed hash."""
    return hmac.compare_digest(keyed_hash(value, purpose=purpose, env=env), stored)


def is_hashed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(_PREFIX)


def mask_digits(value: str, keep_last: int = 4) -> str:
    """``6222021234567890123`` -> ``***************0123``."""
    digits = re.sub(r"\D", "", value)
    if len(digits) <= keep_last:
        return "*" * len(digits)
    return "*" * (len(digits) - keep_last) + digits[-keep_last:]


def mask_phone(e164: str) -> str:
    """``+8613800138000`` -> ``+86138****8000`` (country and operator prefix, last four)."""
    if len(e164) < 9:
        return "*" * len(e164)
    return e164[:6] + "*" * (len(e164) - 10) + e164[-4:]


_LONG_DIGITS = re.compile(r"\d{6,}")


def scrub(text: str) -> str:
    """Mask any run of 6+ digits in free text (a log line, an error message)."""
    return _LONG_DIGITS.sub(lambda m: mask_digits(m.group(0)), text)
