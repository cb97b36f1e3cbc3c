"""The floor's health: its dependencies (the switch's AMI, the FastAGI server, the store), each
campaign's state, and the alarms (``dialer.floor.alarms``), checked every ``every_s``.

The AMI's state is the client's own (its ready gate closes the moment the connection drops).
FastAGI is probed with a TCP connect that sends nothing (the IVR counts it as a probe, not a
broken peer); the store with ``SELECT 1``. A change of any dependency is logged at the
default level, and one summary line each ``summary_s`` says what the floor did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy import text

from dialer.floor.alarms import AlarmBoard, CampaignState, IvrGuard, find_alarms
from dialer.floor.view import Dependency, Health
from dialer.lists.campaigns import State
from dialer.outcomes import LIVE_OUTCOMES, Outcome
from dialer.privacy import scrub
from dialer.telephony.agents import AgentState
from dialer.telephony.core import FinishedAttempt

if TYPE_CHECKING:
    from dialer.floor.loop import CampaignLoop

log = logging.getLogger(__name__)


async def probe_tcp(url: str, timeout_s: float) -> str | None:
    """None when ``agi://host:port`` accepts a connection, else why not."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 4573
    try:
        async with asyncio.timeout(timeout_s):  # (3.11's wait_for can swallow a cancellation)
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return f"{host}:{port}: no answer in {timeout_s:g} s"
    except OSError as exc:
        return f"{host}:{port}: {os.strerror(exc.errno) if exc.errno else exc}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


class HealthMonitor:
    """One floor's dependencies and alarms, kept current by ``run()``."""

    def __init__(
        self,
        loop: CampaignLoop,
        *,
        every_s: float = 2.0,
        probe_timeout_s: float = 1.5,
        summary_s: float = 60.0,
        switch_grace_s: float = 3.0,
    ) -> None:
        self.loop = loop
        self.every_s = every_s
        self.probe_timeout_s = probe_timeout_s
        self.summary_s = summary_s
        self.board = AlarmBoard()
        self.fastagi_error: str | None = None
        self.fastagi_up: bool | None = None
        self.store_error: str | None = None
        self.store_up: bool | None = None
        self._ami_up: bool | None = None
        #: the switch down this long before its alarm (a first connect, a reconnect blip);
        #: /healthz says "down" at once all the same
        self.switch_grace_s = switch_grace_s
        self._ami_down_since: float | None = None
        self._minute = {"dials": 0, "live": 0, "abandoned": 0, "ivr_failed": 0, "ended": 0}
        self._dials_at_summary = 0
        loop.on_outcome.append(self._count)

    @property
    def ivr_guard(self) -> IvrGuard:
        return self.loop.ivr_guard

    @property
    def agi_url(self) -> str:
        return self.loop.core.rows.agi_url

    # -- checks ---------------------------------------------------------------------------

    def _store_ping(self) -> None:
        with self.loop.store.session() as s:
            s.execute(text("SELECT 1"))

    async def check(self) -> None:
        err = None
        if any(r.spec.flow for r in self.loop.runs.values()):
            err = await probe_tcp(self.agi_url, self.probe_timeout_s)
            self._changed("FastAGI", self.agi_url, self.fastagi_up, err)
            self.fastagi_up, self.fastagi_error = err is None, err
        else:  # no campaign uses an IVR flow: nothing to probe
            self.fastagi_up, self.fastagi_error = None, None
        try:
            async with asyncio.timeout(self.probe_timeout_s * 2):
                await asyncio.to_thread(self._store_ping)
            err = None
        except TimeoutError:
            err = "no answer in time"
        except Exception as exc:  # the driver's error: any of them means "down"
            err = scrub(f"{type(exc).__name__}: {exc}".splitlines()[0])[:200]
        self._changed("store", "", self.store_up, err)
        self.store_up, self.store_error = err is None, err
        self.evaluate()

    def _changed(self, what: str, where: str, was: bool | None, err: str | None) -> None:
        if err is None and was is False:
            log.warning("%s %s is back", what, where)
        elif err is not None and was is not False:
            log.error("%s %s is down: %s", what, where, err)

    def evaluate(self) -> None:
        loop = self.loop
        client = loop.core.client
        up = client.ready.is_set()
        if self._ami_up is not None and up != self._ami_up and up:
            log.warning("switch %s: AMI up again", loop.core.rows.server)
        self._ami_up = up
        mono = time.monotonic()
        if up:
            self._ami_down_since = None
        elif self._ami_down_since is None:
            self._ami_down_since = mono
        down_long = not up and mono - (self._ami_down_since or mono) >= self.switch_grace_s
        now = loop.clock.time()
        states = []
        for run in loop.runs.values():
            counts = run.abandons(now)
            queue = run.spec.queue
            states.append(
                CampaignState(
                    name=run.spec.name,
                    running=run.spec.state is State.RUNNING,
                    uses_agents=run.uses_agents,
                    queue=queue,
                    live_answers=counts.window_live,
                    abandoned=counts.window_abandoned,
                    cap=run.spec.pacing.abandon_cap,
                    breaker_reason=run.breaker.reason if run.breaker.is_open else None,
                    agents_logged_in=loop.pool.logged_in(queue) if queue else 0,
                    stopped_by_ivr=self.ivr_guard.stopped_reason(run),
                )
            )
        self.board.sync(
            find_alarms(
                switch=loop.core.rows.server,
                switch_up=not down_long,
                agents_known=up,
                switch_error=client.last_error,
                fastagi_up=self.fastagi_up,
                fastagi_error=self.fastagi_error,
                store_up=self.store_up,
                store_error=self.store_error,
                campaigns=states,
            ),
            loop.now(),
        )

    def health(self) -> Health:
        self.evaluate()  # the switch's state is read now, not at the last check
        loop = self.loop
        client = loop.core.client
        deps = [
            Dependency(
                f"ami:{loop.core.rows.server}",
                client.ready.is_set(),
                "" if client.ready.is_set() else (client.last_error or "connecting"),
            ),
            Dependency("store", self.store_up is not False, self.store_error or ""),
        ]
        if self.fastagi_up is not None:
            deps.append(Dependency("fastagi", self.fastagi_up, self.fastagi_error or ""))
        campaigns = {}
        for run in loop.runs.values():
            held = self.ivr_guard.stopped_reason(run) or loop.guard.held_reason(run)
            campaigns[run.spec.name] = "held" if held else run.spec.state.value
        return Health(loop.now(), tuple(deps), campaigns, tuple(self.board.active()))

    # -- the summary line -----------------------------------------------------------------

    def _count(self, campaign: str, item: FinishedAttempt) -> None:
        m = self._minute
        m["ended"] += 1
        if item.outcome in LIVE_OUTCOMES:
            m["live"] += 1
        if item.outcome is Outcome.ABANDONED:
            m["abandoned"] += 1
        if item.outcome is Outcome.IVR_FAILED:
            m["ivr_failed"] += 1

    def summary(self) -> str:
        loop = self.loop
        h = self.health()
        sent = loop.core.originates_sent
        m, self._minute = self._minute, dict.fromkeys(self._minute, 0)
        dials, self._dials_at_summary = sent - self._dials_at_summary, sent
        deps = ", ".join(f"{d.name} {'up' if d.up else 'DOWN'}" for d in h.dependencies)
        states = list(h.campaigns.values())
        agents = f"{loop.pool.count(AgentState.IDLE)} idle/{loop.pool.logged_in()} logged in"
        return (
            f"{deps}; campaigns {states.count('running')} running, {states.count('paused')} "
            f"paused, {states.count('held')} held; {len(loop.core.tracker.calls)} calls live; "
            f"agents {agents}; last {self.summary_s:g} s: {dials} dials, {m['ended']} ended, "
            f"{m['live']} live, {m['abandoned']} abandoned, {m['ivr_failed']} IVR failed; "
            f"AMI events read up to {loop.core.lag.take_worst():.1f} s late; "
            f"alarms: {', '.join(f'{a.kind.value} {a.subject}' for a in h.alarms) or 'none'}"
        )

    async def run(self) -> None:
        next_summary = time.monotonic() + self.summary_s
        while True:
            try:
                await self.check()
                if time.monotonic() >= next_summary:
                    next_summary += self.summary_s
                    log.info("floor: %s", self.summary())
            except Exception:  # a monitor that dies silently is worse than a logged error
                log.exception("health check failed")
            await asyncio.sleep(self.every_s)
