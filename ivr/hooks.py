"""Bank-side actions a flow names: the defaults work against the project's own store.

A hook is a plain callable ``hook(h: HookContext, **args)`` returning an outcome string
(``"ok"``, ``"locked"`` ...) or a bool. A bank replaces one by naming its own callable in the
flow (``hook: mybank.ivr:activate``). Hooks run off the event loop (they may block on a
database or a core-banking call) and never receive or keep digits beyond the call itself.

Without a contact (a test call) the default hooks change nothing in the store and record
``test: true`` in the session data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from dialer.errors import ComplianceError
from dialer.lists.callbacks import book_callback as book_callback_in_store
from dialer.lists.callbacks import slot_instant
from dialer.lists.compliance import zone
from dialer.privacy import is_hashed, matches_hash
from dialer.store import Store
from dialer.store.models import Contact, DncEntry
from ivr.errors import HookError

if TYPE_CHECKING:  # the context module imports flows, which load these hooks
    from ivr.context import CallContext

LOCK_FIELD = "ivr_verify_locked_until"
LOCK_FOR = dt.timedelta(hours=24)


@dataclass
class HookContext:
    call: CallContext
    store: Store | None
    now: Callable[[], dt.datetime]
    data: MutableMapping[str, Any] = field(default_factory=dict)  # the session's data (masked)
    vars: MutableMapping[str, str] = field(default_factory=dict)  # values collected this call

    @property
    def is_test(self) -> bool:
        return self.call.contact_id is None or self.store is None


def _update_contact(h: HookContext, change: Callable[[dict[str, Any]], None]) -> bool:
    """Apply ``change`` to the contact's JSON fields; False in a test call."""
    if h.is_test:
        h.data["test"] = True
        return False
    assert h.store is not None
    with h.store.session() as s:
        contact = s.get(Contact, h.call.contact_id)
        if contact is None:
            raise HookError(f"contact {h.call.contact_id} is gone")
        fields = dict(contact.fields or {})
        change(fields)
        contact.fields = fields  # a new dict, so the JSON column is marked dirty
    return True


# --- identity ---------------------------------------------------------------------------


def verify_identity(h: HookContext, *, field: str, digits: str) -> bool:
    """Typed digits against the contact's keyed hash; the digits are not kept anywhere."""
    stored = h.call.fields.get(field)
    if not is_hashed(stored):
        raise HookError(f"contact field {field!r} holds no keyed hash to verify against")
    return matches_hash(digits, str(stored), purpose=field)


def verification_locked(h: HookContext, *, field: str) -> bool:
    until = h.call.fields.get(LOCK_FIELD)
    if not until:
        return False
    try:
        return dt.datetime.fromisoformat(str(until)) > h.now()
    except ValueError:
        return False


def lock_verification(h: HookContext, *, field: str) -> str:
    until = (h.now() + LOCK_FOR).isoformat()

    def change(fields: dict[str, Any]) -> None:
        fields[LOCK_FIELD] = until

    _update_contact(h, change)
    h.data["locked_until"] = until
    return "locked"


# --- bank actions -----------------------------------------------------------------------


def activate_card(h: HookContext) -> str:
    at = h.now().isoformat()
    already = bool(h.call.fields.get("card_activated_at"))

    def change(fields: dict[str, Any]) -> None:
        fields.setdefault("card_activated_at", at)

    _update_contact(h, change)
    card = h.call.fields.get("card_last4")
    if card:
        h.data["card"] = "****" + str(card)[-4:]
    return "already" if already else "ok"


def parse_mmdd(value: str, today: dt.date) -> dt.date | None:
    """``MMDD`` -> the next such date on or after ``today`` (this year or next)."""
    if len(value) != 4 or not value.isdigit():
        return None
    month, day = int(value[:2]), int(value[2:])
    for year in (today.year, today.year + 1):
        try:
            d = dt.date(year, month, day)
        except ValueError:
            return None
        if d >= today:
            return d
    return None


PROMISE_HORIZON_DAYS = 30


def promise_to_pay(h: HookContext, *, var: str = "promise_date") -> str:
    day = parse_mmdd(h.vars.get(var, ""), h.now().date())
    if day is None:
        raise HookError("no valid promise date was collected")
    at = h.now().isoformat()

    def change(fields: dict[str, Any]) -> None:
        fields["promise_to_pay"] = {"date": day.isoformat(), "at": at}

    _update_contact(h, change)
    h.data["promise_date"] = day.isoformat()
    return "ok"


def block_card(h: HookContext) -> str:
    at = h.now().isoformat()

    def change(fields: dict[str, Any]) -> None:
        fields["card_blocked_at"] = at

    _update_contact(h, change)
    card = h.call.fields.get("card_last4")
    if card:
        h.data["blocked_card"] = "****" + str(card)[-4:]
    return "ok"


def opt_out(h: HookContext, *, scope: str = "marketing") -> str:
    """Keypad opt-out: a DNC row for this number with the given scope."""
    if h.call.is_test or h.store is None or not h.call.phone:
        h.data["test"] = True
        return "ok"
    with h.store.session() as s:
        exists = s.scalars(
            select(DncEntry.id).where(
                DncEntry.number == h.call.phone,
                DncEntry.is_prefix.is_(False),
                DncEntry.scope == scope,
            )
        ).first()
        if exists is None:
            s.add(
                DncEntry(
                    number=h.call.phone,
                    is_prefix=False,
                    scope=scope,
                    reason=f"keypad opt-out ({h.call.campaign or h.call.flow})",
                    source="ivr-opt-out",
                )
            )
    h.data["dnc_scope"] = scope
    return "ok" if exists is None else "already"


def book_callback(h: HookContext, *, slot: str) -> str:
    """The customer picked a callback time by keypad (``slot``: ``CallbackSlot``, in their own
    zone): booked for the campaign through ``dialer.lists.callbacks.book_callback`` - only
    where every compliance rule allows the dial then (window, holidays, DNC, attempt limit).
    ``ok`` when booked (``callback_due`` in the session data), ``refused`` (with the rule)."""
    if h.is_test:
        h.data["test"] = True
        h.data["callback_slot"] = slot
        return "ok"
    assert h.store is not None
    with h.store.session() as s:
        contact = s.get(Contact, h.call.contact_id)
        if contact is None:
            raise HookError(f"contact {h.call.contact_id} is gone")
        due = slot_instant(slot, h.now(), contact.timezone)  # ConfigError: a flow's mistake
        try:
            booked = book_callback_in_store(
                s,
                contact,
                due,
                now=h.now(),
                booked_by=f"ivr:{h.call.flow}",
                attempt_id=h.call.attempt_id,
            )
        except ComplianceError as exc:
            h.data["callback_slot"] = slot
            h.data["callback_refused"] = str(exc).removeprefix("callback refused: ")
            return "refused"
        h.data["callback_slot"] = slot
        h.data["callback_due"] = booked.due_at.astimezone(zone(contact.timezone)).isoformat()
    return "ok"


DEFAULT_HOOKS: dict[str, Callable[..., Any]] = {
    "book_callback": book_callback,
    "verify_identity": verify_identity,
    "verification_locked": verification_locked,
    "lock_verification": lock_verification,
    "activate_card": activate_card,
    "promise_to_pay": promise_to_pay,
    "block_card": block_card,
    "opt_out": opt_out,
}


# --- validators for collect nodes (pure) ------------------------------------------------


def _any(value: str, today: dt.date) -> bool:
    return True


def _promise_date(value: str, today: dt.date) -> bool:
    day = parse_mmdd(value, today)
    return day is not None and (day - today).days <= PROMISE_HORIZON_DAYS


VALIDATORS: dict[str, Callable[[str, dt.date], bool]] = {
    "any": _any,
    "promise_date": _promise_date,
}
