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


class RelayProcess:
    def __init__(self, folder: Path, dsn_port: int, refuse: list[str], bounce: list[str]) -> None:
        import subprocess
        import sys

        import trustme

        folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.cafile = folder / "ca.pem"
        ca.cert_pem.write_to_path(str(self.cafile))
        cert.private_key_pem.write_to_path(str(folder / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
        self.user = "dialer"
        self.password = "test-only-smtp-password"
        (folder / "password").write_text(self.password)
        self.maildir = folder / "maildir"
        argv = [
            sys.executable,
            str(Path(__file__).with_name("smtp_relay.py")),
            "--cert", str(folder / "cert.pem"),
            "--key", str(folder / "key.pem"),
            "--user", self.user,
            "--password-file", str(folder / "password"),
            "--maildir", str(self.maildir),
            "--dsn-to", f"127.0.0.1:{dsn_port}",
        ]  # fmt: skip
        for a in refuse:
            argv += ["--refuse", a]
        for a in bounce:
            argv += ["--bounce", a]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"SMTP relay did not start: {line!r}")
        self.port = int(line.split()[1])

    def kept(self) -> list[bytes]:
        import mailbox

        if not self.maildir.exists():
            return []
        return [m.as_bytes() for m in mailbox.Maildir(str(self.maildir), create=False)]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


REFUSED = "nobody@customer.test"
BOUNCING = "gone@customer.test"


@pytest.fixture
def inbound_port() -> int:
    return free_port()


@pytest.fixture
def smtp_relay(tmp_path: Path, inbound_port: int) -> Iterator[RelayProcess]:
    relay = RelayProcess(tmp_path / "relay", inbound_port, [REFUSED], [BOUNCING])
    try:
        yield relay
    finally:
        relay.stop()
