"""Fixtures for the IVR tests: the shipped flows, a seeded store, a fixed clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from ivr_fakepbx import FakeAsterisk, Persona, header, memory_io

from dialer.campaigns import apply_campaign, parse_campaign
from dialer.privacy import keyed_hash
from dialer.store import Store
from dialer.store.models import Attempt, Contact
from ivr.driver import BlockingAGI, drive_sync
from ivr.engine import Services, SessionOutcome, run_session
from ivr.flow import FlowLibrary
from ivr.record import StoreRecorder

NOW = dt.datetime(2026, 11, 30, 6, 0, tzinfo=dt.UTC)
ID_LAST6 = "350123"


def clock() -> dt.datetime:
    return NOW


@pytest.fixture(scope="session")
def library() -> FlowLibrary:
    return FlowLibrary.load()


@pytest.fixture
def services(store: Store, library: FlowLibrary) -> Services:
    return Services(library=library, recorder=StoreRecorder(store, clock), store=store, clock=clock)


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


@pytest.fixture
def run_flow(services: Services) -> RunFn:
    """Run a flow in memory against the fake Asterisk (same engine and driver as process AGI)."""

    def run(
        flow: str, persona: Persona, *, attempt: int | None = None, language: str = "zh"
    ) -> Run:
        pbx = FakeAsterisk(persona)
        script = flow if attempt is None else f"{flow}?attempt={attempt}"
        read, write = memory_io(pbx, header(script, language=language))
        io = BlockingAGI(read, write)  # type: ignore[arg-type]
        env = io.environment()
        return Run(drive_sync(run_session(services, env), io), pbx)

    return run
