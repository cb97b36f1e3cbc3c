"""Who the IVR is speaking to: the attempt -> contact -> campaign facts a flow reads.

``load_context`` is blocking (it reads the store); drivers call it through the engine's
``Call`` effect, off the event loop. Without an attempt id the flow runs with the flow's
sample values and the session is recorded ``is_test=True`` (an administrator's test call).
An attempt may carry fields of its own (``detail["fields"]``: an alert's payload), read over
the contact's. An attempt id that does not exist is an error, never a silent test: sample amounts must not
be read to a real customer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Row, select

from dialer.privacy import keyed_hash
from dialer.store import Store
from dialer.store.models import Attempt, Campaign, Contact
from ivr.agi import AGIEnvironment
from ivr.errors import IvrError
from ivr.flow import Flow
from ivr.say import LANGS

DEFAULT_LANG = "zh"


class UnknownAttempt(IvrError):
    """The attempt id the dialplan passed is not in the store."""


@dataclass(frozen=True)
class CallContext:
    flow: str
    channel: str
    language: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    phone: str = ""
    attempt_id: int | None = None
    contact_id: int | None = None
    campaign: str | None = None
    campaign_queue: str | None = None
    is_test: bool = False


def attempt_id_of(env: AGIEnvironment) -> int | None:
    """``?attempt=42``, ``agi_arg_N`` ``attempt=42``, or the first plain ``agi_arg``."""
    raw = env.param("attempt", position=1)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise IvrError(f"attempt id is not a number: {raw[:20]!r}") from None
    if value <= 0:
        raise IvrError("attempt id must be positive")
    return value


def _lang(*candidates: str | None) -> str:
    for c in candidates:
        if c in LANGS:
            return str(c)
    return DEFAULT_LANG


def sample_context(flow: Flow, env: AGIEnvironment) -> CallContext:
    fields = dict(flow.sample.fields)
    for name in flow.sample.hashed:
        if name in fields:
            fields[name] = keyed_hash(str(fields[name]), purpose=name)
    return CallContext(
        flow=flow.name,
        channel=env.channel,
        language=_lang(env.language),
        fields=fields,
        name=flow.sample.name,
        phone=flow.sample.phone,
        campaign_queue=flow.default_queue,
        is_test=True,
    )


def call_fields(
    contact: Mapping[str, Any] | None, detail: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The contact's fields, with the attempt's own over them (an alert's payload: the amount
    and merchant of the transaction this call is about, ``detail["fields"]``)."""
    own = (detail or {}).get("fields")
    return {**(contact or {}), **(own if isinstance(own, Mapping) else {})}


#: what a call's context needs from the store, in one query (attempt, its contact, its
#: campaign); Core rows, no ORM objects (this runs for every call the IVR answers)
CONTEXT_QUERY: Final = (
    select(
        Attempt.id,
        Attempt.phone,
        Attempt.detail,
        Contact.id.label("contact_id"),
        Contact.language,
        Contact.fields,
        Contact.name,
        Campaign.name.label("campaign"),
        Campaign.spec,
    )
    .outerjoin(Contact, Contact.id == Attempt.contact_id)
    .outerjoin(Campaign, Campaign.id == Attempt.campaign_id)
)


def context_from_row(flow: Flow, env: AGIEnvironment, row: Row[Any] | None) -> CallContext:
    """The context of a call whose attempt's row (``CONTEXT_QUERY``) was read; ``None``: the
    attempt does not exist (``UnknownAttempt``)."""
    if row is None:
        raise UnknownAttempt(f"no attempt {attempt_id_of(env)}")
    spec: Mapping[str, Any] = row.spec if row.campaign is not None else {}
    has_contact = row.contact_id is not None
    return CallContext(
        flow=flow.name,
        channel=env.channel,
        language=_lang(row.language if has_contact else None, spec.get("language")),
        fields=call_fields(row.fields if has_contact else None, row.detail),
        name=row.name if has_contact else None,
        phone=row.phone,
        attempt_id=row.id,
        contact_id=row.contact_id,
        campaign=row.campaign,
        campaign_queue=spec.get("queue") or flow.default_queue,
        is_test=False,
    )


def load_context(store: Store | None, flow: Flow, env: AGIEnvironment) -> CallContext:
    attempt_id = attempt_id_of(env)
    if attempt_id is None:
        return sample_context(flow, env)
    if store is None:
        raise IvrError("an attempt id was given but the IVR has no store")
    with store.engine.connect() as conn:
        row = conn.execute(CONTEXT_QUERY.where(Attempt.id == attempt_id)).first()
    return context_from_row(flow, env, row)


def failed_context(flow: Flow, env: AGIEnvironment) -> CallContext:
    """The context of a call whose own could not be read: the session runs as an error (the
    dialplan rescues the caller) and is recorded without an attempt."""
    return CallContext(flow=flow.name, channel=env.channel, language=DEFAULT_LANG)


def find_contact_id(store: Store, phone: str, campaign: str) -> int | None:
    """Helper for tests and tools: a contact's id by campaign and phone."""
    with store.session() as s:
        return s.scalars(
            select(Contact.id)
            .join(Campaign)
            .where(Campaign.name == campaign, Contact.phone == phone)
        ).one_or_none()
