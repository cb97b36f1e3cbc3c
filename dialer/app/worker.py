"""``dialer run`` as one worker among several: the composition root of a worker process.

Topology (DESIGN.md section 8): one PostgreSQL store; N workers; M Asterisk servers named in
the settings (``asterisk:``). A worker serves each switch it can claim (``dialer.store.workers``:
one owner per switch, by heartbeat) with its own AMI connection, ``DialerCore`` and ``Dialer``
(the campaign loop over that switch's agents). Every few seconds it:

- writes its heartbeat with what each switch shows (AMI up, live calls, agents by state);
- claims the switches it is configured for that have no live owner (a standby worker takes
  over a dead one's switch here) and first adopts the attempts left open there, so its resync
  follows the calls still live and ends the others ``unknown``;
- re-reads the campaigns (pauses and pacing changes made on any worker's console) and rebases
  each campaign's abandon windows on the store's counts: the cap is campaign-wide;
- gives up on a switch whose AMI has been gone for ``dead_after_s``: its calls end ``unknown``
  (the switch took them with it) while the other switches carry on; the connection keeps
  retrying in the background.

Adding a worker is starting one more ``dialer run`` (own ``--worker`` id) against the same store.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dialer.app.alerting import attach_desk
from dialer.errors import AMIAuthFailed, ConfigError
from dialer.floor.fleet import Fleet
from dialer.floor.loop import Clock, WallClock
from dialer.floor.service import Dialer
from dialer.floor.view import AgentState
from dialer.lists.alertspec import AlertsConfig
from dialer.lists.stats import abandon_rate
from dialer.pacing.types import SHORT_WINDOW_S
from dialer.settings import AMISettings, Settings
from dialer.store import Store
from dialer.store import workers as registry
from dialer.telephony.agents import OFF_FLOOR
from dialer.telephony.ami.adapter import AMIClient
from dialer.telephony.core import DialerCore

log = logging.getLogger(__name__)


def _wall() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class SwitchRun:
    """One switch this worker serves."""

    settings: AMISettings
    core: DialerCore
    dialer: Dialer
    task: asyncio.Task[None] | None = None
    down_since: float | None = None  # monotonic time the AMI was last seen down
    given_up: int = 0  # calls ended `unknown` because the switch stayed away
    info: dict[str, Any] = field(default_factory=dict)


class WorkerService:
    """The switches this process serves, its heartbeat, and its console's ``Fleet``."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        me: registry.WorkerIdentity,
        *,
        agi_url: str,
        servers: Sequence[str] | None = None,
        campaigns: Sequence[str] | None = None,
        standby: bool = False,
        takeover: bool = True,
        max_channels: int = 500,
        clock: Clock | None = None,
        client_factory: Callable[[AMISettings], AMIClient] = AMIClient.from_settings,
        wall: Callable[[], dt.datetime] = _wall,
        alerts: AlertsConfig | None = None,
    ) -> None:
        self.alerts = alerts  # the alerts file: each switch's floor gets a desk
        known = {a.name: a for a in settings.switches()}
        unknown = sorted(set(servers or ()) - set(known))
        if unknown:
            raise ConfigError(
                f"no Asterisk server named {', '.join(unknown)} in the settings "
                f"(known: {', '.join(sorted(known))})",
                key="asterisk",
            )
        self.store = store
        self.settings = settings
        self.me = me
        self.agi_url = agi_url
        # the switches named first; the others only as a standby, from a dead worker
        if standby:
            self.switches = []
        else:
            self.switches = [known[n] for n in servers] if servers else list(known.values())
        self.standby = [a for a in known.values() if a not in self.switches] if takeover else []
        self.campaigns = campaigns
        self.max_channels = max_channels
        self.clock: Clock = clock or WallClock()
        self.client_factory = client_factory
        self.wall = wall
        self.heartbeat_s = settings.worker.heartbeat_s
        self.dead_after = dt.timedelta(seconds=settings.worker.dead_after_s)
        self.runs: dict[str, SwitchRun] = {}
        self.control: Dialer | None = None  # a standby's controls, until it serves a switch
        self.fleet = Fleet(
            store, settings, dialers=self.dialers, control=lambda: self.control, wall=wall
        )
        self._stop = asyncio.Event()
        self.lost_id = False
        #: why the service stopped by itself (a switch refused the login), else None
        self.fatal: AMIAuthFailed | None = None
        self._healthy_since: float | None = None  # first good heartbeat after a store outage

    def dialers(self) -> dict[str, Dialer]:
        return {name: r.dialer for name, r in self.runs.items()}

    # -- life cycle ---------------------------------------------------------------------

    async def register(self) -> None:
        """Write this worker's row; ``WorkerConflict`` if its id is alive elsewhere."""

        def work() -> None:
            with self.store.session() as s:
                registry.register(s, self.me, self.wall(), dead_after=self.dead_after)

        await asyncio.to_thread(work)

    async def run(self) -> None:
        """Serve until ``stop()``: claim, heartbeat, sync, every ``heartbeat_s``."""
        while not self._stop.is_set():
            try:
                await self._round()
            except Exception:  # the store away for a moment: the next round tries again
                log.exception("worker %s: round failed", self.me.id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.heartbeat_s)

    def stop(self) -> None:
        self._stop.set()
        for r in self.runs.values():
            r.dialer.stop()

    async def shutdown(self, grace_s: float) -> None:
        """After ``run`` returned: live calls get ``grace_s``; switches are freed at once."""
        await asyncio.gather(*(self._stop_switch(r, grace_s) for r in self.runs.values()))
        self.runs.clear()
        if self.control is not None:  # never started: only its thread to end
            await self.control.core.stop(grace_s=0.0)
        if not self.lost_id:

            def work() -> None:
                with self.store.session() as s:
                    registry.stopped(s, self.me, self.wall())

            with contextlib.suppress(Exception):
                await asyncio.to_thread(work)

    async def _stop_switch(self, r: SwitchRun, grace_s: float) -> None:
        r.dialer.stop()
        if r.task is not None:
            # a loop still waiting for its switch's AMI has nothing to finish: cancel it
            done, _ = await asyncio.wait({r.task}, timeout=self.heartbeat_s)
            if not done:
                r.task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await r.task
        await r.core.stop(grace_s=grace_s)
        lag = r.core.lag
        log.info(
            "switch %s: its AMI events were read up to %.2f s late (%d stamped events)",
            r.settings.name,
            lag.max_s,
            lag.samples,
        )

    # -- one round ----------------------------------------------------------------------

    async def _round(self) -> None:
        await self._watch_switches()
        try:
            owners, health = await asyncio.to_thread(self._beat)
        except Exception:
            self._healthy_since = None  # cut off from the store: judge no one for a while
            self.fleet.set_store_ok(False)
            raise
        self.fleet.set_store_ok(True)
        if self._healthy_since is None:
            self._healthy_since = time.monotonic()
        if self.lost_id:
            log.error("worker %s: another process took this worker id; stopping", self.me.id)
            self.stop()
            return
        self.fleet.set_health(health)
        for name, owner in owners.items():
            r = self.runs.get(name)
            if r is not None and owner != self.me.id:  # taken over while we stalled
                log.error("switch %s: now served by %s; letting it go", name, owner)
                del self.runs[name]
                await self._stop_switch(r, 0.0)
        # After the store was away, every worker's heartbeat looks old: take nothing over
        # until the others have had dead_after to beat again.
        steady = time.monotonic() - self._healthy_since >= self.dead_after.total_seconds()
        for a in [*self.switches, *(self.standby if steady else [])]:
            if a.name not in self.runs and not self._stop.is_set():
                adopted = await asyncio.to_thread(self._claim, a.name, a in self.standby)
                if adopted is not None:
                    await self._start_switch(a, adopted)
        await self._sync()
        if not self.runs:
            if self.control is None:
                self.control = self._dialer(self._core(self.settings.switches()[0], "-"))
            await self.control.load_campaigns()
            await asyncio.to_thread(self.fleet.refresh_from_store)

    def _beat(self) -> tuple[dict[str, str | None], list[dict[str, Any]]]:
        now = self.wall()
        with self.store.session() as s:
            if not registry.heartbeat(s, self.me, now, self._info()):
                self.lost_id = True
                return {}, []
            owners = registry.switch_owners(s, list(self.runs))
            health = [h.to_json(now) for h in registry.health(s, now, self.dead_after)]
        return owners, health

    def _claim(self, name: str, takeover_only: bool) -> int | None:
        """Claim the switch and adopt what dead workers left open on it; None if not ours."""
        now = self.wall()
        with self.store.session() as s:
            if not registry.claim_switch(
                s, name, self.me, now, dead_after=self.dead_after, takeover_only=takeover_only
            ):
                return None
            return registry.adopt_open_attempts(s, name, self.me, now, dead_after=self.dead_after)

    def _core(self, a: AMISettings, server: str) -> DialerCore:
        client = self.client_factory(a)
        return DialerCore(self.store, client, agi_url=self.agi_url, owner=self.me.id, server=server)

    def _dialer(self, core: DialerCore) -> Dialer:
        dialer = Dialer(
            self.store,
            core,
            self.settings,
            clock=self.clock,
            owner=self.me.id,
            campaigns=self.campaigns,
            max_channels=self.max_channels,
        )
        attach_desk(dialer, self.alerts)  # alerts first, on every switch it serves
        return dialer

    async def _start_switch(self, a: AMISettings, adopted: int) -> None:
        core = self._core(a, a.name)
        dialer = self._dialer(core)
        self.fleet.adopt(dialer)
        r = SwitchRun(a, core, dialer)
        self.runs[a.name] = r
        log.warning(
            "worker %s: serving switch %s (%s:%d)%s",
            self.me.id,
            a.name,
            a.host,
            a.port,
            f"; adopted {adopted} open attempt(s)" if adopted else "",
        )
        await core.start()
        r.task = asyncio.create_task(self._serve(r), name=f"switch-{a.name}")

    async def _serve(self, r: SwitchRun) -> None:
        """The switch's campaign loop; it waits (and retries) while the AMI is away."""
        while not self._stop.is_set():
            try:
                await r.dialer.run()
                return
            except AMIAuthFailed as exc:  # a wrong secret does not heal: stop the service
                self.fatal = exc
                self.stop()
                return
            except Exception as exc:  # AMI not ready in time: the client keeps reconnecting
                log.warning("switch %s: %s; retrying", r.settings.name, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.heartbeat_s)

    async def _watch_switches(self) -> None:
        give_up_after = self.dead_after.total_seconds()
        for name, r in self.runs.items():
            if r.core.client.connected:
                r.down_since = None
                continue
            mono = time.monotonic()
            if r.down_since is None:
                r.down_since = mono
            elif mono - r.down_since >= give_up_after and r.core.live_calls():
                n = r.core.give_up(f"switch {name} unreachable for {give_up_after:g} s")
                r.given_up += n
                log.error("switch %s: gone; %d call(s) ended unknown", name, n)

    async def _sync(self) -> None:
        """Campaigns as the store has them now, and campaign-wide abandon counts."""
        for r in list(self.runs.values()):
            await r.dialer.load_campaigns()
            runs = list(r.dialer.runs.values())
            now = r.dialer.now()

            def counts(runs: list[Any] = runs, now: dt.datetime = now) -> list[Any]:
                out = []
                with self.store.session() as s:
                    for run in runs:
                        cap = abandon_rate(s, run.id, since=now - run.spec.pacing.abandon_window)
                        short = abandon_rate(
                            s, run.id, since=now - dt.timedelta(seconds=SHORT_WINDOW_S)
                        )
                        out.append((run, cap, short))
                return out

            for run, cap, short in await asyncio.to_thread(counts):
                run.abandon_counts.rebase_cap(cap.live_answers, cap.abandoned)
                run.abandon_counts.rebase_short(short.live_answers, short.abandoned)

    def _info(self) -> dict[str, Any]:
        """What this worker tells the others (and every console) about its switches."""
        switches = {}
        for name, r in self.runs.items():
            stats = r.core.stats()
            pool = r.dialer.pool
            switches[name] = {
                "ami_ready": bool(stats["ami_ready"]) and r.core.client.connected,
                "live_calls": int(stats["live_calls"]),
                "originates_sent": int(stats["originates_sent"]),
                "finished": int(stats["finished"]),
                "given_up": r.given_up,
                "event_lag_s": round(float(stats["event_lag_s"]), 3),
                "agents": {s.value: pool.count(s) for s in AgentState if s not in OFF_FLOOR},
                "last_error": stats["ami_last_error"],
            }
        return {"host": self.me.host, "pid": self.me.pid, "switches": switches}


__all__ = ["SwitchRun", "WorkerService"]
