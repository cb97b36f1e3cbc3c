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
from typing import Any

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


#: a mainland resident ID: 17 digits and a check character (digit or X)
_CN_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
#: a card (or account) number as people write it: 13-19 digits, in groups split by spaces or
#: dashes ("6222 0212 3456 7890", "6222-0212-3456-7890123")
_CARD = re.compile(r"(?<![\d])\d(?:[ -]?\d){12,18}(?![\d])")
_LONG_DIGITS = re.compile(r"\d{6,}")


def holds_card_or_id(text: str) -> bool:
    """Whether free text holds a card number or a resident ID in clear."""
    return bool(_CN_ID.search(text) or _CARD.search(text))


def scrub(text: str) -> str:
    """Mask what identifies a customer in free text (a name field, a note, a log line, an error
    message): ID numbers, card numbers with or without separators, any run of 6+ digits. The
    last four characters stay, so an operator can still tell two values apart."""
    text = _CN_ID.sub(lambda m: "*" * 14 + m.group(0)[-4:], text)
    text = _CARD.sub(lambda m: mask_digits(m.group(0)), text)
    return _LONG_DIGITS.sub(lambda m: mask_digits(m.group(0)), text)


def scrub_json(obj: Any) -> Any:
    """``scrub`` every string in a JSON-able value; keyed hashes become ``(hashed)``."""
    if isinstance(obj, str):
        return "(hashed)" if is_hashed(obj) else scrub(obj)
    if isinstance(obj, Mapping):
        return {str(k): scrub_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [scrub_json(v) for v in obj]
    return obj
