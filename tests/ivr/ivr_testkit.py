"""Shared helpers for the IVR tests (a module of its own, not ``conftest``, so test files
can import it by a name no other test directory uses)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ivr_fakepbx import FakeAsterisk

from dialer.lists.campaigns import apply_campaign, parse_campaign
from dialer.privacy import keyed_hash
from dialer.store import Store
from dialer.store.models import Attempt, Contact
from ivr.engine import SessionOutcome

NOW = dt.datetime(2026, 11, 30, 6, 0, tzinfo=dt.UTC)
ID_LAST6 = "350123"


def clock() -> dt.datetime:
    return NOW


#: contact fields per flow (what an import would have stored; id_last6 hashed)
FIELDS: dict[str, dict[str, Any]] = {
    "card_activation": {"card_last4": "4321"},
    "repayment_reminder": {
        "amount_due": "10010.05",
        "due_date": "2026-12-15",
        "card_last4": "4321",
    },
    "transaction_alert": {
        "card_last4": "4321",
        "txn_amount": "8999.00",
        "merchant_kind": "overseas",
        "txn_time": "2026-11-29T23:41:00",
    },
}


def seed_attempt(
    store: Store, flow: str, *, language: str = "zh", phone: str = "+8613800000486"
) -> int:
    """A campaign running ``flow``, one contact, one attempt; returns the attempt id."""
    spec = parse_campaign(
        {
            "name": f"c-{flow.replace('_', '-')}",
            "mode": "broadcast",
            "flow": flow,
            "queue": "campaign-agents",
            "purpose": "marketing" if flow == "opt_out" else "service",
        }
    )
    with store.session() as s:
        camp, _ = apply_campaign(s, spec, source=None, actor="test")
        fields = dict(FIELDS.get(flow, {}))
        fields["id_last6"] = keyed_hash(ID_LAST6, purpose="id_last6")
        contact = Contact(
            campaign_id=camp.id,
            phone=phone,
            name="张三",
            language=language,
            timezone="Asia/Shanghai",
            fields=fields,
        )
        s.add(contact)
        s.flush()
        attempt = Attempt(campaign_id=camp.id, contact_id=contact.id, phone=phone, state="in_ivr")
        s.add(attempt)
        s.flush()
        return attempt.id


@dataclass
class Run:
    outcome: SessionOutcome
    pbx: FakeAsterisk


RunFn = Callable[..., Run]
