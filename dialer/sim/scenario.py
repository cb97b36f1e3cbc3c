"""Scenario files for the simulated PBX: called parties, personas, simulated agents.

A scenario (``config/scenarios/sim-*.yaml``) replaces the default called party (ring 2 s,
answer, stay on the line) with a statistical model and/or personas, and staffs queues with
simulated agents who log in and out, pause, ring, talk and wrap up. Every random draw
comes from the PBX's seeded generator, so a run is reproducible.

Schema (all durations in seconds; a distribution is a number or
``{dist: fixed|exp|normal|lognormal|uniform, mean, sd, min, max}``)::

    seed: 7
    speed: 1                     # default for `dialer sim-pbx` when --speed is not given
    called_party:
      invalid_share: 0.03        # unallocated (cause 1)
      busy_share: 0.08           # busy (Reason 5, cause 17)
      congestion_share: 0.02     # congestion (Reason 8, cause 34)
      answer_probability: 0.7    # of the remaining calls; the others ring until timeout
      ring_s: {dist: lognormal, mean: 8, sd: 4}
      no_answer_ring_s: 60       # unanswered: the network gives up (cause 19); null: never
      machine_share: 0.15        # of answered calls: an answering machine
      human_greeting_s: 0.8
      machine_greeting_s: {dist: normal, mean: 6, sd: 1}
      hangup_after_s: null       # a human hangs up this long after answering (null: never)
      queue_patience_s: null     # a human waiting in a queue hangs up after this long
    personas:                    # matched before the model: exact number or suffix
      - match: "+8613800001001"
        answer_after_s: 3
        greeting: human          # human | machine | silence | none
        greeting_s: 0.8
        digits: [{at: 2.0, keys: "1"}]
        hangup_after_s: 30
        queue_patience_s: 10
    agents:
      - queue: activation-agents
        count: 10
        interface: PJSIP/sim-activation-{n:03d}
        answer_s: 2
        no_answer_probability: 0.0
        talk_s: {dist: lognormal, mean: 90, sd: 30}
        wrapup_s: 5              # member wrap-up (null: the queue's wrapuptime)
        exclusive: true          # the queue's static members (queues.conf) are not used
        login_at_s: 0
        logout_at_s: null
        breaks: [{at_s: 3600, duration_s: 600, reason: lunch}]
    faults:                      # on purpose, to rehearse the dialer's reconnects
      - {at_s: 600, drop: all}             # close every AMI connection
      - {at_s: 900, refuse_s: 20}          # refuse connections for 20 s (unlisten)
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dialer.errors import ConfigError
from dialer.settings import format_validation_error
from dialer.sim.events import Cause, ChannelHungup
from dialer.sim.queues import AgentBehaviour
from dialer.sim.sounds import Media, Prompt
from dialer.yamlfile import load_mapping

if TYPE_CHECKING:
    from dialer.sim.engine import Channel, Engine
    from dialer.sim.pbx import SimPbx


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Dist(_Frozen):
    dist: Literal["fixed", "exp", "normal", "lognormal", "uniform"] = "fixed"
    mean: float = 0.0
    sd: float = 0.0
    min: float = 0.0
    max: float | None = None

    def sample(self, rng: random.Random) -> float:
        if self.dist == "fixed":
            v = self.mean
        elif self.dist == "exp":
            v = rng.expovariate(1.0 / self.mean) if self.mean > 0 else 0.0
        elif self.dist == "normal":
            v = rng.gauss(self.mean, self.sd)
        elif self.dist == "lognormal":
            if self.mean <= 0:
                v = 0.0
            else:
                s2 = math.log(1 + (self.sd / self.mean) ** 2)
                v = rng.lognormvariate(math.log(self.mean) - s2 / 2, math.sqrt(s2))
        else:
            v = rng.uniform(self.min, self.max if self.max is not None else self.mean)
        v = max(self.min, v)
        if self.max is not None and self.dist != "uniform":
            v = min(self.max, v)
        return v


def _dist(v: Any) -> Any:
    if isinstance(v, int | float):
        return {"dist": "fixed", "mean": float(v)}
    return v


class DigitPress(_Frozen):
    at: float = Field(ge=0)
    keys: str


class Persona(_Frozen):
    match: str
    answer_after_s: float | None = 2.0  # None: never answers
    busy: bool = False
    greeting: Literal["human", "machine", "silence", "none"] = "human"
    greeting_s: float = 0.8
    digits: tuple[DigitPress, ...] = ()
    hangup_after_s: float | None = None
    queue_patience_s: float | None = None


class CalledParty(_Frozen):
    invalid_share: float = Field(0.0, ge=0, le=1)
    busy_share: float = Field(0.0, ge=0, le=1)
    congestion_share: float = Field(0.0, ge=0, le=1)
    answer_probability: float = Field(1.0, ge=0, le=1)
    ring_s: Dist = Dist(mean=2.0)
    #: an unanswered call stops ringing after this long (the network gives up, cause 19);
    #: None: it rings until the dialer's Originate timeout
    no_answer_ring_s: Dist | None = None
    machine_share: float = Field(0.0, ge=0, le=1)
    human_greeting_s: float = 0.8
    machine_greeting_s: Dist = Dist(mean=6.0)
    hangup_after_s: Dist | None = None
    queue_patience_s: Dist | None = None

    def model_post_init(self, _ctx: Any) -> None:
        if self.invalid_share + self.busy_share + self.congestion_share > 1:
            raise ValueError("invalid + busy + congestion shares exceed 1")


class Break(_Frozen):
    at_s: float
    duration_s: float
    reason: str = "break"


class AgentGroup(_Frozen):
    queue: str
    count: int = Field(1, ge=1)
    interface: str = "PJSIP/sim-{queue}-{n:03d}"
    name: str = "Sim Agent {n}"
    answer_s: Dist = Dist(mean=2.0)
    no_answer_probability: float = Field(0.0, ge=0, le=1)
    talk_s: Dist = Dist(mean=60.0)
    wrapup_s: int | None = None
    login_at_s: float = 0.0
    logout_at_s: float | None = None
    breaks: tuple[Break, ...] = ()
    #: the queue's static members from queues.conf leave: this group is the whole floor
    exclusive: bool = False


class Fault(_Frozen):
    """A fault on purpose at ``at_s``: drop AMI connections, or refuse new ones a while."""

    at_s: float = Field(ge=0)
    drop: Literal["all", "oldest"] | None = None
    refuse_s: float | None = Field(None, gt=0)
    refuse_mode: Literal["accept_close", "unlisten"] = "unlisten"


class Scenario(_Frozen):
    seed: int | None = None
    speed: float | None = Field(None, gt=0)
    called_party: CalledParty | None = None
    personas: tuple[Persona, ...] = ()
    agents: tuple[AgentGroup, ...] = ()
    faults: tuple[Fault, ...] = ()


def _prep(data: Any) -> Any:
    """Turn bare numbers into fixed distributions where a distribution is expected."""
    dist_keys = {
        "ring_s",
        "no_answer_ring_s",
        "machine_greeting_s",
        "hangup_after_s",
        "queue_patience_s",
        "answer_s",
        "talk_s",
    }
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if k in dist_keys and v is not None and "personas" not in str(k):
                out[k] = _dist(v)
            else:
                out[k] = _prep(v)
        return out
    if isinstance(data, list):
        return [_prep(x) for x in data]
    return data


#: Keys only a pacing rehearsal scenario has (dialer.pacing.scenario): told apart, not dumped.
REHEARSAL_KEYS = frozenset({"duration_s", "answer_rate", "abandon_target", "ring_answered_s"})


def load_scenario(source: str | Path | dict[str, Any]) -> Scenario:
    fname = "<scenario>"
    if isinstance(source, dict):
        data = source
    else:
        fname = str(source)
        data = load_mapping(Path(source))
    if REHEARSAL_KEYS & set(data):
        raise ConfigError(
            "this is a pacing scenario for `dialer simulate`, not a simulated-PBX floor for "
            "`dialer sim-pbx --scenario` or `dialer demo --scenario` (those have called_party, "
            "personas, agents on queues)",
            file=fname,
        )
    personas = data.get("personas") or []
    data = _prep({k: v for k, v in data.items() if k != "personas"})
    data["personas"] = personas
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(fname, exc)) from exc


# ====================================================================== called parties
class PartyModel:
    """The ``SimCalledParty()`` behaviour: personas first, then the statistical model."""

    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self.sc = scenario
        self.rng = rng
        self.exact = {p.match: p for p in scenario.personas}
        self.stats: dict[str, int] = {}

    def persona_for(self, number: str) -> Persona | None:
        if number in self.exact:
            return self.exact[number]
        for p in self.sc.personas:
            if number.endswith(p.match):
                return p
        return None

    def draw(self, number: str) -> Persona | str:
        p = self.persona_for(number)
        if p is not None:
            return p
        cp = self.sc.called_party or CalledParty()
        r = self.rng.random()
        if r < cp.invalid_share:
            return "invalid"
        r -= cp.invalid_share
        if r < cp.busy_share:
            return "busy"
        r -= cp.busy_share
        if r < cp.congestion_share:
            return "congestion"
        if self.rng.random() >= cp.answer_probability:
            return "noanswer"
        machine = self.rng.random() < cp.machine_share
        return Persona(
            match=number,
            answer_after_s=cp.ring_s.sample(self.rng),
            greeting="machine" if machine else "human",
            greeting_s=cp.machine_greeting_s.sample(self.rng) if machine else cp.human_greeting_s,
            hangup_after_s=(
                cp.hangup_after_s.sample(self.rng) if cp.hangup_after_s and not machine else None
            ),
            queue_patience_s=(
                cp.queue_patience_s.sample(self.rng)
                if cp.queue_patience_s and not machine
                else None
            ),
        )

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    async def run(self, e: Engine, ch: Channel, number: str) -> None:
        d = self.draw(number)
        if isinstance(d, str):
            self._count(d)
            if d == "invalid":
                ch.hangupcause = Cause.UNALLOCATED
                ch.soft16_emitted = True
                e.chan_event("SoftHangupRequest", ch, (("Cause", "16"),))
                ch.soft_hangup = True
                raise ChannelHungup
            if d in ("busy", "congestion"):
                e.busy(ch, congestion=d == "congestion")
                await e.wait(ch, None)
                return
            e.ringing(ch)
            cp = self.sc.called_party
            if cp is not None and cp.no_answer_ring_s is not None:
                await e.wait(ch, cp.no_answer_ring_s.sample(self.rng))
                hang_up(e, ch, Cause.NO_ANSWER)
            await e.wait(ch, None)
            return
        p = d
        if p.busy:
            self._count("busy")
            e.busy(ch, congestion=False)
            await e.wait(ch, None)
            return
        e.ringing(ch)
        if p.answer_after_s is None:
            self._count("noanswer")
            await e.wait(ch, None)
            return
        await e.wait(ch, p.answer_after_s)
        self._count("machine" if p.greeting == "machine" else "answered")
        ch.party = p
        e.answer(ch)
        t_answer = e.clock.now()
        self._greet(e, ch, p)
        actions: list[tuple[float, str, str]] = [
            (t_answer + x.at, "dtmf", x.keys) for x in p.digits
        ]
        if p.hangup_after_s is not None:
            actions.append((t_answer + p.hangup_after_s, "hangup", ""))
        actions.sort()
        for at, kind, keys in actions:
            await e.wait(ch, max(0.0, at - e.clock.now()))
            if kind == "dtmf":
                await e.send_dtmf(ch, keys)
            else:
                hang_up(e, ch)
        await e.wait(ch, None)

    @staticmethod
    def _greet(e: Engine, ch: Channel, p: Persona) -> None:
        now = e.clock.now()
        media: list[tuple[float, Prompt]] = []
        if p.greeting in ("human", "machine"):
            media.append((now, Prompt("greeting", p.greeting_s, Media.SPEECH)))
            media.append((now + p.greeting_s, Prompt("line", 3600.0, Media.SILENCE)))
        elif p.greeting == "silence":
            media.append((now, Prompt("line", 3600.0, Media.SILENCE)))
        target = ch.other
        if target is not None and media:
            target.media_log.extend(media)
            e.media_started(ch)


def hang_up(e: Engine, ch: Channel, cause: int = 16) -> None:
    """The called party hangs up (as ``Hangup()`` on its leg)."""
    ch.hangupcause = cause
    ch.soft16_emitted = True
    e.chan_event("SoftHangupRequest", ch, (("Cause", "16"),))
    ch.soft_hangup = True
    raise ChannelHungup


# ====================================================================== the floor
def _answers(no_answer_probability: float) -> Callable[[random.Random], bool]:
    def answers(rng: random.Random) -> bool:
        return rng.random() >= no_answer_probability

    return answers


class ScenarioRuntime:
    """Applies a scenario to a running PBX: agents' shifts and breaks, the party model."""

    def __init__(self, pbx: SimPbx, sc: Scenario) -> None:
        self.pbx = pbx
        self.sc = sc
        self.handles: list[Any] = []
        self.agents: list[tuple[AgentGroup, str, str]] = []
        e = pbx.engine
        if sc.called_party is not None or sc.personas:
            e.party_model = PartyModel(sc, pbx.rng)
        qm = e.queues
        for g in sc.agents:
            if qm is None or g.queue not in qm.queues:
                raise ConfigError(f"agents: no queue {g.queue!r} in queues.conf")
            if g.exclusive:
                qm.queues[g.queue].members.clear()
            for n in range(1, g.count + 1):
                iface = g.interface.format(queue=g.queue, n=n)
                name = g.name.format(queue=g.queue, n=n)
                self.agents.append((g, iface, name))
                qm.behaviour[iface] = AgentBehaviour(
                    ring_s=g.answer_s.sample,
                    talk_s=g.talk_s.sample,
                    answers=_answers(g.no_answer_probability),
                )

    def start(self) -> None:
        clock = self.pbx.clock
        for g, iface, name in self.agents:
            self.handles.append(clock.call_later(g.login_at_s, self._login, g, iface, name))
            if g.logout_at_s is not None:
                self.handles.append(clock.call_later(g.logout_at_s, self._logout, g, iface))
            for b in g.breaks:
                self.handles.append(clock.call_later(b.at_s, self._pause, g, iface, True, b.reason))
                self.handles.append(
                    clock.call_later(b.at_s + b.duration_s, self._pause, g, iface, False, "")
                )

        for f in self.sc.faults:
            self.handles.append(clock.call_later(f.at_s, self._fault, f))

    def _fault(self, f: Fault) -> None:
        faults = self.pbx.faults
        if f.refuse_s is not None:
            faults.refuse_for(f.refuse_s, f.refuse_mode)
        if f.drop == "all":
            faults.drop_all()
        elif f.drop == "oldest":
            faults.drop(0)

    def stop(self) -> None:
        for h in self.handles:
            h.cancel()

    def _login(self, g: AgentGroup, iface: str, name: str) -> None:
        qm = self.pbx.engine.queues
        qm.add_member(g.queue, iface, name)
        if g.wrapup_s is not None:
            qm.queues[g.queue].members[iface].wrapuptime = g.wrapup_s

    def _logout(self, g: AgentGroup, iface: str) -> None:
        self.pbx.engine.queues.remove_member(g.queue, iface)

    def _pause(self, g: AgentGroup, iface: str, paused: bool, reason: str) -> None:
        self.pbx.engine.queues.pause_member(g.queue, iface, paused, reason)


def apply_scenario(pbx: SimPbx, source: str | Path | dict[str, Any]) -> ScenarioRuntime:
    sc = load_scenario(source)
    if sc.seed is not None:
        pbx.rng.seed(sc.seed)
    return ScenarioRuntime(pbx, sc)
