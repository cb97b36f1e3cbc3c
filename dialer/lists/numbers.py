"""A contact's several numbers, as data: the ``contact_number`` table.

The import writes them (the ``phone`` column first, then ``mobile_phone``, ``home_phone``,
``work_phone``, in that dialling order; a contact with one number has no rows). A call step
moves ``contact.phone`` to the next usable number after N failed calls (``steps.next_number``);
an SMS step sends to the first usable mobile (a number imported as ``mobile``, else the first
that ``phonenumbers`` calls a mobile); listings show them masked. A number whose call ended
``invalid_number`` is marked ``invalid``, one found on the voice DNC list when the calls would
move to it ``dnc``: neither is dialled or texted again.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import phonenumbers
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from dialer.privacy import mask_phone
from dialer.store.models import ContactNumber


class NumberKind(enum.StrEnum):
    MAIN = "main"  # the import's ``phone`` column
    MOBILE = "mobile"
    HOME = "home"
    WORK = "work"


class NumberState(enum.StrEnum):
    ACTIVE = "active"
    INVALID = "invalid"  # a call ended invalid_number
    DNC = "dnc"  # on the voice do-not-call list when the calls would have moved to it


#: The import's extra number columns, in dialling order after the main number.
OTHER_KINDS: tuple[NumberKind, ...] = (NumberKind.MOBILE, NumberKind.HOME, NumberKind.WORK)


@dataclass(frozen=True)
class Number:
    number: str  # E.164
    kind: NumberKind
    state: NumberState = NumberState.ACTIVE

    @property
    def usable(self) -> bool:
        return self.state is NumberState.ACTIVE


def rows_for(contact_id: int, numbers: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """``contact_number`` rows for a contact's (kind, number) list in dialling order."""
    return [
        {"contact_id": contact_id, "number": n, "kind": k, "position": i, "state": "active"}
        for i, (k, n) in enumerate(numbers)
    ]


def add_numbers(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(ContactNumber), list(rows))


def numbers_of(session: Session, contact_ids: Iterable[int]) -> dict[int, list[Number]]:
    """Each contact's numbers in dialling order (absent: the contact has one number)."""
    ids = sorted(set(contact_ids))
    out: dict[int, list[Number]] = defaultdict(list)
    for i in range(0, len(ids), 500):
        q = (
            select(ContactNumber.contact_id, ContactNumber.number, ContactNumber.kind)
            .add_columns(ContactNumber.state)
            .where(ContactNumber.contact_id.in_(ids[i : i + 500]))
            .order_by(ContactNumber.contact_id, ContactNumber.position)
        )
        for cid, number, kind, state in session.execute(q):
            out[cid].append(Number(number, NumberKind(kind), NumberState(state)))
    return dict(out)


def numbers_for(session: Session, contact_id: int, phone: str) -> list[Number]:
    """The contact's numbers; its one number when it has no rows."""
    return numbers_of(session, [contact_id]).get(contact_id) or [Number(phone, NumberKind.MAIN)]


def set_state(
    session: Session, contact_id: int, number: str, state: NumberState, now: dt.datetime
) -> None:
    session.execute(
        update(ContactNumber)
        .where(ContactNumber.contact_id == contact_id, ContactNumber.number == number)
        .values(state=state.value, state_at=now)
        .execution_options(synchronize_session=False)
    )


_MOBILE_TYPES = frozenset(
    {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}
)


@functools.lru_cache(maxsize=4096)
def is_mobile(e164: str) -> bool:
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.number_type(parsed) in _MOBILE_TYPES


def sms_number(numbers: Sequence[Number]) -> str | None:
    """Mobile first: the first usable number imported as a mobile, else the first usable one
    that is a mobile number; None when the contact has no number an SMS can reach."""
    usable = [n for n in numbers if n.usable]
    for n in usable:
        if n.kind is NumberKind.MOBILE:
            return n.number
    return next((n.number for n in usable if is_mobile(n.number)), None)


def masked(numbers: Sequence[Number]) -> list[dict[str, str]]:
    """What listings show: kind, masked number, state."""
    return [
        {"kind": n.kind.value, "number": mask_phone(n.number), "state": n.state.value}
        for n in numbers
    ]


__all__ = [
    "OTHER_KINDS",
    "Number",
    "NumberKind",
    "NumberState",
    "add_numbers",
    "is_mobile",
    "masked",
    "numbers_for",
    "numbers_of",
    "rows_for",
    "set_state",
    "sms_number",
]
