"""Helpers to run the dialer core against the simulated PBX over loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Callable, Sequence
from typing import Any

from dialer.lists.campaigns import CampaignSpec, apply_campaign
from dialer.settings import BankSettings
from dialer.sim import SimPbx, VirtualClock
from dialer.sim.engine import ChannelHungup
from dialer.sim.queues import AgentBehaviour
from dialer.sim.sounds import Media, Prompt
from dialer.store import Store
from dialer.store.models import Attempt, Contact
from dialer.telephony.ami.adapter import AMIClient
from dialer.telephony.core import DialerCore, FinishedAttempt
from ivr.messages import dialplan_messages

SECRET = os.environ.get("DIALER_AMI_SECRET", "test-only-ami-secret")

RETRY = {
    "busy": "10m",
    "no_answer": "2h",
    "congestion": "5m",
    "failed": "30m",
    "customer_hangup": "1d",
    "abandoned": "3d",
}


def campaign(store: Store, name: str = "e2e", **over: Any) -> int:
    doc: dict[str, Any] = {
        "name": name,
        "channel": "Local/{number}@customer",
        "caller_id": "95588",
        "queue": "activation-agents",
        "max_attempts": 5,
        "retry": RETRY,
        "pacing": {"ring_timeout_s": 25, "hold_limit_s": 2},
        **over,
    }
    with store.session() as s:
        row, _ = apply_campaign(s, CampaignSpec.model_validate(doc), source=None, actor="test")
        return row.id


def attempts(
    store: Store,
    campaign_id: int,
    phones: Sequence[str],
    name: str = "张伟明",
    language: str = "zh",
) -> list[int]:
    """Contact + attempt rows, as ``hopper.start_attempt`` leaves them (state created)."""
    ids = []
    with store.session() as s:
        for phone in phones:
            c = Contact(
                campaign_id=campaign_id,
                phone=phone,
                name=name,
                language=language,
                timezone="Asia/Shanghai",
                attempts=1,
            )
            s.add(c)
            s.flush()
            a = Attempt(campaign_id=campaign_id, contact_id=c.id, phone=phone, seq=1, detail={})
            s.add(a)
            s.flush()
            ids.append(a.id)
    return ids


async def party_pbx(talk_s: float = 5.0) -> SimPbx:
    """A started PBX whose called parties are ``Party`` and whose agents answer in 0.5 s."""
    p = SimPbx(clock=VirtualClock(), secret=SECRET, record=True)
    p.engine.party_model = Party()
    p.engine.queues.default_behaviour = AgentBehaviour(
        ring_s=lambda r: 0.5, talk_s=lambda r: talk_s
    )
    await p.start(ami_port=0)
    return p


_CORES: list[DialerCore] = []


async def stop_cores() -> None:
    """Stop every core a test made (a failed test never reached its own ``stop``); run it
    before the PBX stops, or the PBX waits on the client's reconnected socket."""
    while _CORES:
        core = _CORES.pop()
        if core._tasks or core.client._task is not None:
            await asyncio.wait_for(core.stop(grace_s=0), 10)


async def kill_core(core: DialerCore) -> None:
    """As kill -9 would: the socket drops, the tasks vanish, nothing more is written."""
    _CORES.remove(core)
    core.client._closing = True
    tasks = [*core._tasks, *([core.client._task] if core.client._task else [])]
    for task in tasks:
        task.cancel()
    core.client.drop()
    await asyncio.gather(*tasks, return_exceptions=True)
    core._db.shutdown(wait=False)


def make_core(store: Store, pbx: SimPbx, **kw: Any) -> DialerCore:
    client = AMIClient(
        "127.0.0.1",
        pbx.port,
        "dialer",
        SECRET,
        reconnect_min_s=0.01,
        reconnect_max_s=0.1,
        ping_interval_s=3600,
        action_timeout_s=5.0,
    )
    opts: dict[str, Any] = {
        "agi_url": "agi://127.0.0.1:4573",
        "clock": pbx.clock.epoch,
        "tick_s": 0.05,
        "ready_timeout_s": 10.0,
        "flush_s": 0.01,
    }
    core = DialerCore(store, client, **{**opts, **kw})
    core.rows.messages = dialplan_messages(BankSettings())  # as the floor sets them
    _CORES.append(core)
    return core


async def settle(core: DialerCore, polls: int = 500) -> None:
    """Let loopback traffic flow until the client has read nothing new for a few polls."""
    last, quiet = -1, 0
    for _ in range(polls):
        await asyncio.sleep(0.001)
        now = core.client.bytes_in
        quiet = quiet + 1 if now == last and core.client.ready.is_set() else 0
        if quiet >= 3:
            return
        last = now


async def run_until(
    pbx: SimPbx,
    core: DialerCore,
    done: Callable[[], bool],
    *,
    step: float = 1.0,
    limit: float = 600.0,
    on_step: Callable[[float], None] | None = None,
) -> None:
    """Advance PBX time step by step, letting real loopback traffic flow between steps."""
    assert isinstance(pbx.clock, VirtualClock)
    t = 0.0
    while not done():
        if t >= limit:
            raise AssertionError(f"not done after {limit} s of PBX time")
        await pbx.clock.advance(step)
        t += step
        await settle(core)
        if on_step is not None:
            on_step(t)
            await settle(core)
    await core._flush()


def collector(core: DialerCore) -> list[FinishedAttempt]:
    out: list[FinishedAttempt] = []
    core.on_finished(out.append)
    return out


def utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


class Party:
    """The called party, chosen by the number's last three digits."""

    async def run(self, e: Any, ch: Any, number: str) -> None:
        kind = number[-3:]
        try:
            e.ringing(ch)
            await e.wait(ch, 1.0)
            e.answer(ch)
            if kind == "222":  # hangs up one second after answering
                await e.wait(ch, 1.0)
                e.request_hangup(ch)
                return
            if kind == "777":  # an answering machine: a long greeting
                await e.play_prompt(ch, Prompt("greeting", 6.0, Media.SPEECH))
            elif kind == "990":  # asks for an agent: "0" at the notice's options prompt
                while not any(p.name == "dialer/notice-options" for _, p in ch.media_log):
                    await e.wait(ch, 0.1)
                await e.wait(ch, 0.5)
                await e.send_dtmf(ch, "0")
            elif kind == "888":  # a person: "hello?", then silence
                await e.play_prompt(ch, Prompt("hello", 0.6, Media.SPEECH))
                await e.play_prompt(ch, Prompt("quiet", 6.0, Media.SILENCE))
            await e.wait(ch, None)  # stays until the other side hangs up
        except ChannelHungup:
            return
