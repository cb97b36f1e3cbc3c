"""Rehearsal scenarios (``config/scenarios/*.yaml``): a team, its customers and the pacing limits.

A scenario file is validated into an immutable :class:`Scenario`; an invalid file is refused with
one line per problem (file, key, message). ``with_campaign`` lays a campaign's ``pacing`` keys over
it so a supervisor rehearses exactly the settings the live dialer would use.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from dialer.errors import ConfigError
from dialer.lists.campaigns import CampaignSpec, Pacing
from dialer.pacing.dists import DistKind, DistSpec, as_dist_spec
from dialer.settings import format_validation_error
from dialer.yamlfile import load_mapping

Dist = Annotated[DistSpec, BeforeValidator(as_dist_spec)]

#: ``calls_per_second`` when a scenario sets no limit (the Pacing model's upper bound).
NO_CPS_LIMIT = 1000.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AgentStep(_Frozen):
    """From ``at_s`` on, ``agents`` are logged in (busy ones finish their call before leaving)."""

    at_s: float = Field(ge=0)
    agents: int = Field(ge=0, le=10000)


class RatePoint(_Frozen):
    at_s: float = Field(ge=0)
    rate: float = Field(ge=0, le=1)


class Scenario(_Frozen):
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    duration_s: float = Field(gt=0, le=7 * 86400)
    agents: int | tuple[AgentStep, ...]
    answer_rate: Annotated[float, Field(ge=0, le=1)] | tuple[RatePoint, ...]
    ring_answered_s: Dist
    no_answer_release_s: Dist
    talk_s: Dist
    wrap_s: Dist
    agent_answer_s: Dist = DistSpec(dist=DistKind.CONST, value=0.0)  # agent's phone rings
    hold_s: float = Field(gt=0, le=60)
    abandon_target: float = Field(gt=0, le=0.5)
    max_lines_per_agent: float = Field(5.0, ge=1, le=10)
    calls_per_second: float | None = Field(None, gt=0, le=NO_CPS_LIMIT)
    min_agents_predictive: int = Field(5, ge=1)
    power_ratio: float = Field(2.0, ge=1, le=10)
    machine_rate: float = Field(0.0, ge=0, lt=1)  # answering machines among answers
    amd_s: float = Field(3.0, ge=0, le=30)  # time to detect a machine and drop it
    abandon_window_s: float | None = Field(None, gt=0)  # None: the whole run
    tick_s: float = Field(1.0, gt=0, le=10)  # a decision at every event and at least this often

    @field_validator("agents")
    @classmethod
    def _agents(cls, v: int | tuple[AgentStep, ...]) -> int | tuple[AgentStep, ...]:
        if isinstance(v, tuple):
            if not v:
                raise ValueError("give a number or at least one {at_s, agents} step")
            if v[0].at_s != 0:
                raise ValueError("the first step must be at_s 0")
            ats = [s.at_s for s in v]
            if ats != sorted(ats) or len(set(ats)) != len(ats):
                raise ValueError("steps must be in increasing at_s order")
        elif v < 1:
            raise ValueError("at least one agent")
        return v

    @field_validator("answer_rate")
    @classmethod
    def _rates(cls, v: float | tuple[RatePoint, ...]) -> float | tuple[RatePoint, ...]:
        if isinstance(v, tuple):
            if not v:
                raise ValueError("give a rate or at least one {at_s, rate} point")
            ats = [p.at_s for p in v]
            if ats != sorted(ats) or len(set(ats)) != len(ats):
                raise ValueError("points must be in increasing at_s order")
        return v

    @field_validator("no_answer_release_s")
    @classmethod
    def _timeout(cls, v: DistSpec) -> DistSpec:
        if _timeout_of(v) < 15:
            raise ValueError("the ring timeout must be at least 15 s")
        return v

    # --- derived ----------------------------------------------------------------------------

    @property
    def ring_timeout_s(self) -> float:
        """The ring timeout: a constant release time, else the release distribution's max."""
        return _timeout_of(self.no_answer_release_s)

    @property
    def agent_steps(self) -> tuple[AgentStep, ...]:
        if isinstance(self.agents, int):
            return (AgentStep(at_s=0, agents=self.agents),)
        return self.agents

    @property
    def max_agents(self) -> int:
        return max(s.agents for s in self.agent_steps)

    def rate_at(self, t: float) -> float:
        """The answer rate at ``t`` (linear between points, flat outside)."""
        if not isinstance(self.answer_rate, tuple):
            return float(self.answer_rate)
        xs = [p.at_s for p in self.answer_rate]
        ys = [p.rate for p in self.answer_rate]
        return float(np.interp(t, xs, ys))

    def pacing(self) -> Pacing:
        """The campaign pacing settings this scenario amounts to (what a policy sees)."""
        return Pacing(
            abandon_cap=self.abandon_target,
            hold_limit_s=self.hold_s,
            ring_timeout_s=min(max(self.ring_timeout_s, 15.0), 120.0),
            max_lines_per_agent=self.max_lines_per_agent,
            min_agents_predictive=self.min_agents_predictive,
            power_ratio=self.power_ratio,
            calls_per_second=self.calls_per_second or NO_CPS_LIMIT,
            wrapup_s=min(self.wrap_s.mean_value(), 3600.0),
        )

    def with_campaign(self, spec: CampaignSpec) -> Scenario:
        """This scenario with the campaign's effective pacing settings in place of its own."""
        p = spec.pacing
        return self.model_copy(
            update={
                "abandon_target": p.abandon_cap,
                "hold_s": p.hold_limit_s,
                "wrap_s": DistSpec(dist=DistKind.CONST, value=p.wrapup_s),
                "no_answer_release_s": _with_timeout(
                    self.no_answer_release_s, self.ring_timeout_s, p.ring_timeout_s
                ),
                "max_lines_per_agent": p.max_lines_per_agent,
                "calls_per_second": p.calls_per_second,
                "min_agents_predictive": p.min_agents_predictive,
                "power_ratio": p.power_ratio,
                "abandon_window_s": p.abandon_window.total_seconds(),
            }
        )


def _with_timeout(d: DistSpec, old: float, new: float) -> DistSpec:
    """The release distribution under another ring timeout: what rang until the old timeout
    now rings until the new one; earlier releases (busy, invalid...) are kept, clipped."""
    if d.dist is DistKind.CONST:
        return DistSpec(dist=DistKind.CONST, value=new)
    if d.dist is DistKind.MIXTURE:
        parts = []
        for part in d.parts or ():
            spec = part.spec()
            doc = spec.model_dump(exclude_none=True)
            if spec.dist is DistKind.CONST and _timeout_of(spec) == old:
                doc = {"dist": "const", "value": new}
            elif spec.max is None or spec.max > new:
                doc["max"] = new
            parts.append({"weight": part.weight, **doc})
        return DistSpec.model_validate({"dist": "mixture", "parts": parts})
    return d.model_copy(update={"max": new})


def _timeout_of(d: DistSpec) -> float:
    """A constant release time; a mixture's longest constant part; else the distribution's max."""
    if d.dist is DistKind.MIXTURE:
        specs = [p.spec() for p in d.parts or ()]
        consts = [_timeout_of(x) for x in specs if x.dist is DistKind.CONST]
        return max(consts) if consts else max(_timeout_of(x) for x in specs)
    if d.dist is DistKind.CONST:
        return float(d.value or 0.0) + d.offset
    return float(d.max) if d.max is not None else math.inf


#: Keys only a simulated-PBX floor file has (dialer.sim.scenario): told apart, not dumped.
FLOOR_KEYS = frozenset({"called_party", "personas", "faults", "speed"})


def parse_scenario(data: dict[str, Any], source: str | None = None) -> Scenario:
    agents = data.get("agents")
    floor_agents = isinstance(agents, list) and any(
        isinstance(a, dict) and "queue" in a for a in agents
    )
    if FLOOR_KEYS & set(data) or floor_agents:
        raise ConfigError(
            "this is a simulated-PBX floor (called parties, agents on queues) for "
            "`dialer sim-pbx --scenario` or `dialer demo --scenario`, not a pacing scenario "
            "for `dialer simulate` (those have name, duration_s, agents, answer_rate)",
            file=source,
        )
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from exc


def load_scenario(path: Path) -> Scenario:
    return parse_scenario(load_mapping(path), str(path))


def find_scenario(name_or_path: str, scenarios_dir: Path) -> Path:
    """A scenario file by path, or by name in ``scenarios_dir`` (``anchor20`` -> anchor20.yaml)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for cand in (scenarios_dir / f"{name_or_path}.yaml", scenarios_dir / f"{name_or_path}.yml"):
        if cand.is_file():
            return cand
    known = (
        sorted(x.stem for x in scenarios_dir.glob("*.yaml") if not x.name.startswith("sim-"))
        if scenarios_dir.is_dir()
        else []
    )
    raise ConfigError(
        f"no scenario {name_or_path!r} (a file, or one of: {', '.join(known) or 'none'})"
    )
