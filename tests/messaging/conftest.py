"""Messaging fixtures: a real Kannel (bearerbox + smsbox + fake SMSC) and our side of it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dialer.messaging.config import SmsSettings
from dialer.messaging.dispatcher import SmsDispatcher
from dialer.messaging.endpoint import SmsEndpoint
from dialer.messaging.kannel import KannelGateway
from dialer.messaging.keywords import Classifier
from dialer.messaging.lifecycle import MsgState
from dialer.store import Store
from dialer.store.messages import Message

from .exim_relay import EximRelay
from .exim_relay import available as exim_available
from .kannel_box import KannelBox, available, free_port

os.environ.setdefault("DIALER_KANNEL_PASSWORD", "test-only-kannel-password")


@pytest.fixture
def kannel(tmp_path: Path) -> Iterator[KannelBox]:
    if not available():
        if os.environ.get("CI") == "true":  # .ci/run installs it: missing there is a failure
            pytest.fail("Kannel is not installed (apt-get install kannel kannel-extras)")
        pytest.skip("Kannel is not installed (apt-get install kannel kannel-extras)")
    box = KannelBox(
        tmp_path / "kannel",
        callback_base=f"http://127.0.0.1:{free_port()}",
        password=os.environ["DIALER_KANNEL_PASSWORD"],
    )
    try:
        box.start()
        yield box
    finally:
        box.close()


class SmsRig:
    """Our side against the Kannel fixture: endpoint, gateway adapter and dispatcher."""

    def __init__(self, store: Store, box: KannelBox, **sms: object) -> None:
        self.store = store
        self.box = box
        self.cfg = SmsSettings.model_validate(
            {"kannel": box.settings(), "retry_s": [0.2, 0.5], "doubt_grace_s": 1.0, **sms}
        )
        self.endpoint = SmsEndpoint(store, Classifier())
        self.gateway = KannelGateway(
            self.cfg.kannel, box.password, status_password=box.status_password
        )
        self.dispatcher = SmsDispatcher(store, self.gateway, self.cfg)

    async def start(self) -> None:
        port = int(self.box.callback_base.rsplit(":", 1)[1])
        await self.endpoint.start("127.0.0.1", port)

    async def stop(self) -> None:
        await self.gateway.close()
        await self.endpoint.stop()

    def state(self, message_id: int) -> Message:
        with self.store.session() as s:
            row = s.get(Message, message_id)
            assert row is not None
            return row

    async def wait_states(
        self, ids: list[int], states: set[MsgState], timeout: float = 20.0
    ) -> list[Message]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            rows = [self.state(i) for i in ids]
            if all(MsgState(r.state) in states for r in rows):
                return rows
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"states: {[(r.id, r.state) for r in rows]}")
            await asyncio.sleep(0.1)

    async def wait_for(self, predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not reached")
            await asyncio.sleep(0.1)


@pytest.fixture
async def sms_rig(store: Store, kannel: KannelBox) -> AsyncIterator[SmsRig]:
    rig = SmsRig(store, kannel)
    await rig.start()
    yield rig
    await rig.stop()


# --- e-mail: an SMTP relay process (STARTTLS + AUTH) and our inbound endpoint -----------------


REFUSED = "nobody@customer.test"
BOUNCING = "gone@customer.test"


@pytest.fixture
def inbound_port() -> int:
    return free_port()


MAIL_DOMAIN = "bank.example"


@pytest.fixture
def smtp_relay(tmp_path: Path, inbound_port: int) -> Iterator[EximRelay]:
    """The bank's mail server: a real Exim process (STARTTLS, AUTH) in front of our endpoint."""
    if not exim_available():
        if os.environ.get("CI") == "true":  # .ci/run installs it: missing there is a failure
            pytest.fail("Exim is not installed (apt-get install exim4-daemon-light)")
        pytest.skip("Exim is not installed (apt-get install exim4-daemon-light)")
    relay = EximRelay(
        tmp_path / "exim",
        domain=MAIL_DOMAIN,
        endpoint_port=inbound_port,
        refuse=[REFUSED],
        bounce=[BOUNCING],
    )
    try:
        yield relay
    finally:
        relay.stop()
