"""The pacing interface: what the live runner (and the rehearsal) hands a policy at each decision.

A policy is called every ~0.5-1 s and on every agent or call event with one frozen
:class:`PacingInput` and answers one integer: how many new calls to originate *now*. Everything a
policy may know arrives in that input (clock included); a policy may keep feedback state between
calls, but only derived from the inputs it was given and the answers it gave.

Arrays rather than lists of objects: a decision for 100 agents and 300 calls must take well under
a millisecond, and the rehearsal makes hundreds of thousands of them. Build inputs with
:meth:`PacingInput.build` when speed does not matter.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from dialer.lists.campaigns import Pacing
from dialer.pacing.estimators import Estimates


class AgentState(enum.IntEnum):
    """An agent's state as pacing sees it (codes of :attr:`PacingInput.agent_state`).

    ``RINGING`` is an agent whose phone rings with a customer already assigned (app_queue
    offering the call): treat as talking with 0 s elapsed. The assigned call is *not* in the
    input's calls any more.
    """

    IDLE = 0
    RINGING = 1
    TALKING = 2
    WRAPUP = 3
    PAUSED = 4


#: States that count towards the team (non-paused, logged in).
ACTIVE_STATES = (AgentState.IDLE, AgentState.RINGING, AgentState.TALKING, AgentState.WRAPUP)

#: The short window of :class:`AbandonCounts` in the live runner and the rehearsal.
SHORT_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class AbandonCounts:
    """Live answers and abandons over the cap window (``pacing.abandon_window``) and a short one.

    ``window_*`` are the counts the campaign's cap applies to; ``short_*`` cover the last
    ``short_window_s`` seconds and drive the emergency brake.
    """

    window_live: int = 0
    window_abandoned: int = 0
    short_live: int = 0
    short_abandoned: int = 0
    short_window_s: float = SHORT_WINDOW_S

    def __post_init__(self) -> None:
        if min(self.window_live, self.window_abandoned, self.short_live, self.short_abandoned) < 0:
            raise ValueError("abandon counts cannot be negative")
        if self.window_abandoned > self.window_live or self.short_abandoned > self.short_live:
            raise ValueError("abandons are a subset of live answers")

    @property
    def window_rate(self) -> float:
        return self.window_abandoned / self.window_live if self.window_live else 0.0

    @property
    def short_rate(self) -> float:
        return self.short_abandoned / self.short_live if self.short_live else 0.0


@dataclass(frozen=True, slots=True)
class CallInFlight:
    """One originated call that does not have an agent yet (for :meth:`PacingInput.build`)."""

    age_s: float  # seconds since the Originate was sent
    answered: bool = False  # True: a live answer waiting in the queue for an agent


IntArray = NDArray[np.int8]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class PacingInput:
    """Everything a policy may use for one decision. Arrays are read-only views.

    - ``now``: the caller's clock in seconds (virtual time in the rehearsal).
    - ``agent_state`` / ``agent_elapsed_s``: one entry per logged-in agent (codes of
      :class:`AgentState`; seconds in that state).
    - ``call_age_s`` / ``call_answered``: one entry per call in flight that needs an agent and
      has none: ringing (``False``) or answered and waiting in the queue (``True``). A call
      still being screened by AMD counts as ringing; ages are seconds since the Originate.
    - ``estimates``: the estimator snapshot (answer probability, ring, talk, wrap-up).
    - ``settings``: the campaign's pacing settings (hot-reloaded settings arrive here).
    - ``abandons``: live answers and abandons over the cap window and the short window.
    - ``other_live_calls``: answered calls that hold a channel but need no agent (IVR,
      answering machine being dropped); broadcast counts them against ``channels``.
    - ``dialable``: contacts ready to dial (hopper); ``None`` = not a limit.
    - ``event_lag_s``: how far behind the switch its events are read (the worst lag of the
      last seconds, ``dialer.telephony.lag``); over ``settings.max_event_lag_s`` the states
      above are stale and every agent policy dials at most progressively.
    """

    now: float
    agent_state: IntArray
    agent_elapsed_s: FloatArray
    call_age_s: FloatArray
    call_answered: BoolArray
    estimates: Estimates
    settings: Pacing
    abandons: AbandonCounts = field(default_factory=AbandonCounts)
    other_live_calls: int = 0
    dialable: int | None = None
    event_lag_s: float = 0.0

    def __post_init__(self) -> None:
        if self.agent_state.shape != self.agent_elapsed_s.shape:
            raise ValueError("agent_state and agent_elapsed_s differ in length")
        if self.call_age_s.shape != self.call_answered.shape:
            raise ValueError("call_age_s and call_answered differ in length")

    @classmethod
    def build(
        cls,
        now: float,
        agents: Iterable[tuple[AgentState, float]],
        calls: Iterable[CallInFlight],
        estimates: Estimates,
        settings: Pacing,
        abandons: AbandonCounts | None = None,
        other_live_calls: int = 0,
        dialable: int | None = None,
        event_lag_s: float = 0.0,
    ) -> PacingInput:
        """Convenience constructor from plain lists (the live runner's per-agent records)."""
        ag = list(agents)
        cl = list(calls)
        states = np.fromiter((int(s) for s, _ in ag), dtype=np.int8, count=len(ag))
        elapsed = np.fromiter((max(float(e), 0.0) for _, e in ag), dtype=np.float64, count=len(ag))
        ages = np.fromiter((max(c.age_s, 0.0) for c in cl), dtype=np.float64, count=len(cl))
        answered = np.fromiter((c.answered for c in cl), dtype=np.bool_, count=len(cl))
        for a in (states, elapsed, ages, answered):
            a.setflags(write=False)
        return cls(
            now=float(now),
            agent_state=states,
            agent_elapsed_s=elapsed,
            call_age_s=ages,
            call_answered=answered,
            estimates=estimates,
            settings=settings,
            abandons=abandons or AbandonCounts(),
            other_live_calls=other_live_calls,
            dialable=dialable,
            event_lag_s=event_lag_s,
        )

    # --- derived counts (cheap, used by every policy) ---------------------------------------

    def count(self, state: AgentState) -> int:
        return int(np.count_nonzero(self.agent_state == state))

    @property
    def active_agents(self) -> int:
        return int(np.count_nonzero(self.agent_state != AgentState.PAUSED))

    @property
    def idle_agents(self) -> int:
        return self.count(AgentState.IDLE)

    @property
    def calls_in_flight(self) -> int:
        return int(self.call_age_s.shape[0])

    @property
    def events_late(self) -> bool:
        """The switch's events are read later than ``settings.max_event_lag_s``."""
        return self.event_lag_s > self.settings.max_event_lag_s

    @property
    def callers_waiting(self) -> int:
        return int(np.count_nonzero(self.call_answered))
