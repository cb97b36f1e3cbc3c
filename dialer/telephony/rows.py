"""The dialer core's store side: the attempt rows it prepares, follows again and finishes.

Runs on the core's database thread, never on the event loop. Prepares Originates (their ids
written to the attempt rows, one transaction per batch), reads the open attempts a restart
follows again, and writes the tracker's updates: states, the optional trail of call events,
and each finished attempt's one outcome (``decide``, with the IVR session's say) and facts
(``hopper.finish_attempt``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update

from dialer.errors import ConfigError, DialerError, LocalProtocolError
from dialer.lists import hopper
from dialer.lists.campaigns import CampaignSpec, spec_of, within_ceilings
from dialer.outcomes import AttemptState, Outcome
from dialer.settings import Ceilings
from dialer.store import Store, workers
from dialer.store.models import Attempt, CallEvent, Campaign, Contact, IvrSession
from dialer.telephony import endings
from dialer.telephony.originate import OriginateRequest, build_originate
from dialer.telephony.tracker import (
    CallPlan,
    Finished,
    IvrSay,
    Transition,
    Update,
    decide,
    decide_untraced,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class NotDialled:
    """An attempt that cannot be dialled at all (a number that is not E.164, a bad campaign
    template): it is ended at once with this outcome instead of being left open."""

    outcome: Outcome
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class FinishedAttempt:
    attempt_id: int
    outcome: Outcome
    facts: Finished
    next_attempt_at: dt.datetime | None


def _ts(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, dt.UTC)


def _preload(s: Any, attempt_ids: Any) -> list[Any]:
    """Load attempts, their contacts and campaigns into the session in three queries.

    The caller keeps the returned list alive: the identity map holds objects weakly, and
    ``s.get()`` only skips its query while they are still in it.
    """
    ids = list(attempt_ids)
    if not ids:
        return []
    rows = list(s.scalars(select(Attempt).where(Attempt.id.in_(ids))).all())
    contact_ids = {r.contact_id for r in rows if r.contact_id}
    campaign_ids = {r.campaign_id for r in rows}
    keep: list[Any] = rows
    if contact_ids:
        keep += s.scalars(select(Contact).where(Contact.id.in_(contact_ids))).all()
    if campaign_ids:
        keep += s.scalars(select(Campaign).where(Campaign.id.in_(campaign_ids))).all()
    return keep


_A = cast(Table, Attempt.__table__)
#: An attempt's Originate prepared: its ids, owner and switch written before it is sent.
DIAL_ATTEMPT = (
    update(_A)
    .where(_A.c.id == bindparam("b_id"))
    .values(
        channel_id=bindparam("b_channel"),
        state=AttemptState.DIALING.value,
        originated_at=bindparam("b_at", type_=_A.c.originated_at.type),
        owner=bindparam("b_owner"),
        server=bindparam("b_server"),
        detail=bindparam("b_detail", type_=_A.c.detail.type),
    )
)


_S = cast(Table, IvrSession.__table__)
#: The IVR sessions (not tests) of attempts ``ids``, oldest first.
IVR_SAYS = (
    select(_S.c.attempt_id, _S.c.status, _S.c.result)
    .where(_S.c.attempt_id.in_(bindparam("ids", expanding=True)), _S.c.is_test.is_(False))
    .order_by(_S.c.id)
)


def ivr_says_statement(attempt_ids: list[int]) -> Any:
    return IVR_SAYS.params(ids=list(attempt_ids))


def open_attempts_statement(server: str, owner: str) -> Any:
    """The attempts a core follows again after a restart (``ix_attempt_open_server``)."""
    return select(Attempt).where(
        Attempt.outcome.is_(None),
        Attempt.server == server,
        Attempt.owner == owner,
        Attempt.channel_id.is_not(None),
    )


def ivr_says(s: Any, attempt_ids: Any) -> dict[int, IvrSay]:
    """The IVR session's own record of each call, when the IVR ran one (not a test): the
    latest session of each attempt, for a whole batch in one query."""
    ids = list(attempt_ids)
    out: dict[int, IvrSay] = {}
    if not ids:
        return out
    for attempt_id, status, result in s.execute(IVR_SAYS, {"ids": ids}):
        out[attempt_id] = IvrSay(status, result)
    return out


class AttemptRows:
    """What the core reads and writes in the store (call its methods on the database thread)."""

    def __init__(
        self,
        store: Store,
        *,
        agi_url: str,
        now: Callable[[], float],
        owner: str,
        server: str,
        trail: bool,
    ) -> None:
        self.store = store
        self.agi_url = agi_url
        #: per language, the Originate variables with the bank's messages (ivr.messages)
        self.messages: Mapping[str, Mapping[str, str]] = {}
        #: the settings' compliance ceilings: no Originate carries a hold limit above them
        self.ceilings: Ceilings | None = None
        self.now = now
        self.owner = owner  # the worker id: this core follows the attempts it owns
        self.server = server  # the switch's name (settings ``asterisk[].name``)
        self.trail = trail  # write each transition as a CallEvent row
        self._specs: dict[tuple[Any, ...], Any] = {}
        self._dial_specs: dict[int, tuple[CampaignSpec, Ceilings, CampaignSpec]] = {}
        self.recovered_from_store = 0  # untraced calls whose outcome the IVR's record gave

    def spec(self, campaign: Campaign) -> Any:
        key = (campaign.id, campaign.updated_at, campaign.state)
        spec = self._specs.get(key)
        if spec is None:
            spec = self._specs[key] = spec_of(campaign)
        return spec

    def open_attempts(self) -> list[tuple[int, str, str | None, CallPlan, float]]:
        out = []
        with self.store.session() as s:
            rows = s.scalars(open_attempts_statement(self.server, self.owner)).all()
            for row in rows:
                detail = row.detail or {}
                if row.channel_id is None:
                    continue
                campaign = s.get(Campaign, row.campaign_id)
                if campaign is None:
                    continue
                spec = self.spec(campaign)
                plan = CallPlan(
                    amd=spec.amd,
                    flow=spec.flow,
                    queue=spec.queue,
                    ring_timeout_s=spec.pacing.ring_timeout_s,
                    agent=(detail.get("personal") or {}).get("channel"),
                    agent_name=(detail.get("personal") or {}).get("agent"),
                )
                originated = (row.originated_at or row.created_at).timestamp()
                out.append(
                    (row.id, row.channel_id, detail.get("other_channel_id"), plan, originated)
                )
        return out

    def prepare_many(
        self, attempt_ids: list[int]
    ) -> list[OriginateRequest | NotDialled | Exception]:
        """Build the Originates and write their ids to the rows, in one transaction."""
        with self.store.session() as s:
            return self.prepare_in(s, attempt_ids)

    def prepare_in(
        self, s: Any, attempt_ids: list[int]
    ) -> list[OriginateRequest | NotDialled | Exception]:
        """``prepare_many`` in the caller's transaction (e.g. the one that wrote the rows)."""
        out: list[OriginateRequest | NotDialled | Exception] = []
        with s.no_autoflush:
            # first (the switch row's lock before any attempt row's, as a takeover takes them)
            taken = self.fenced(s)
            if taken is not None:
                why = f"not dialled: switch {self.server} is served by worker {taken} now"
                return [NotDialled(Outcome.FAILED, why) for _ in attempt_ids]
            _keep = _preload(s, attempt_ids)  # s.get() below then hits the identity map
            for attempt_id in attempt_ids:
                try:
                    out.append(self.prepare_one(s, attempt_id))
                except LocalProtocolError as exc:  # the number is not E.164
                    out.append(NotDialled(Outcome.INVALID_NUMBER, f"not dialled: {exc}"))
                except ConfigError as exc:  # the campaign cannot produce a dial string
                    out.append(NotDialled(Outcome.FAILED, f"not dialled: {exc}"))
                except DialerError as exc:
                    out.append(exc)
        return out

    def dial_spec(self, campaign: Campaign) -> CampaignSpec:
        """The campaign's spec as dialled: validated once per text, within the ceilings."""
        spec = spec_of(campaign)
        if self.ceilings is None:
            return spec
        hit = self._dial_specs.get(campaign.id)
        if hit is not None and hit[0] is spec and hit[1] is self.ceilings:
            return hit[2]
        dialled = within_ceilings(spec, self.ceilings)
        self._dial_specs[campaign.id] = (spec, self.ceilings, dialled)
        return dialled

    def request(
        self,
        spec: CampaignSpec,
        attempt_id: int,
        phone: str,
        language: str | None,
        detail: Mapping[str, Any] | None,
    ) -> OriginateRequest:
        """The Originate of one attempt (``detail``: the row's; ``personal``: a personal
        callback's agent, answered and waiting)."""
        personal = (detail or {}).get("personal") or {}
        return build_originate(
            attempt_id=attempt_id,
            phone=phone,
            spec=spec,
            language=language,
            agi_url=self.agi_url,
            messages=self.messages,
            agent_channel=personal.get("channel"),
            agent_name=personal.get("agent"),
        )

    def prepare_one(self, s: Any, attempt_id: int) -> OriginateRequest:
        attempt = s.get(Attempt, attempt_id)
        if attempt is None:
            raise DialerError(f"no attempt {attempt_id}")
        if attempt.outcome is not None or attempt.channel_id is not None:
            raise DialerError(f"attempt {attempt_id} was already dialled")
        campaign = s.get(Campaign, attempt.campaign_id)
        if campaign is None:
            raise DialerError(f"attempt {attempt_id}: campaign gone")
        contact = s.get(Contact, attempt.contact_id) if attempt.contact_id else None
        req = self.request(
            self.dial_spec(campaign),
            attempt_id,
            attempt.phone,
            contact.language if contact else None,
            attempt.detail,
        )
        attempt.channel_id = req.channel_id
        attempt.state = AttemptState.DIALING.value
        attempt.originated_at = _ts(self.now())
        attempt.owner = self.owner
        attempt.server = self.server
        attempt.detail = {**(attempt.detail or {}), "other_channel_id": req.other_channel_id}
        return req

    def fenced(self, s: Any) -> str | None:
        """The worker serving this switch if not this one (``workers.served_by_another``):
        taken first in a preparing transaction, the switch row's lock before any other."""
        return workers.served_by_another(s, self.server, self.owner)

    def prepare_started(
        self, s: Any, campaign: Campaign, started: Sequence[hopper.Started]
    ) -> list[OriginateRequest | NotDialled]:
        """The Originates of the calls ``hopper.take`` started in ``s``, their ids written to
        the rows in the same transaction (one statement for the batch; the caller took the
        fence, ``fenced``, first)."""
        spec = self.dial_spec(campaign)
        out: list[OriginateRequest | NotDialled] = []
        rows: list[dict[str, Any]] = []
        originated = _ts(self.now())
        for st in started:
            try:
                req = self.request(spec, st.attempt_id, st.phone, st.language, st.detail)
            except LocalProtocolError as exc:  # the number is not E.164
                out.append(NotDialled(Outcome.INVALID_NUMBER, f"not dialled: {exc}"))
                continue
            except ConfigError as exc:  # the campaign cannot produce a dial string
                out.append(NotDialled(Outcome.FAILED, f"not dialled: {exc}"))
                continue
            out.append(req)
            rows.append(
                {
                    "b_id": st.attempt_id,
                    "b_channel": req.channel_id,
                    "b_at": originated,
                    "b_owner": self.owner,
                    "b_server": self.server,
                    "b_detail": {**st.detail, "other_channel_id": req.other_channel_id},
                }
            )
        if rows:
            s.execute(DIAL_ATTEMPT, rows)
        return out

    def write_batch(self, batch: list[Update]) -> list[FinishedAttempt]:
        """Write a batch of tracker updates in one transaction (``endings``): the states of
        live calls, and each finished attempt's one outcome with its facts."""
        done: list[FinishedAttempt] = []
        states: dict[int, AttemptState] = {}
        with self.store.session() as s:
            rows = endings.read_attempts(s, sorted({u.attempt_id for u in batch}))
            says = ivr_says(
                s,
                {
                    u.attempt_id
                    for u in batch
                    if isinstance(u, Finished)
                    and (u.facts is not None or u.outcome is Outcome.UNKNOWN)
                },
            )
            ends: list[tuple[Finished, endings.Ending]] = []
            for u in batch:
                if isinstance(u, Transition):
                    if u.after is not AttemptState.ENDED:
                        states[u.attempt_id] = u.after
                    if self.trail and u.attempt_id in rows:
                        s.add(
                            CallEvent(
                                attempt_id=u.attempt_id,
                                at=_ts(u.at),
                                kind=u.after.value,
                                detail={"signal": u.signal.value, "from": u.before.value},
                            )
                        )
                    continue
                states.pop(u.attempt_id, None)
                ending = self.ending(u, rows.get(u.attempt_id), says.get(u.attempt_id))
                if ending is not None:
                    ends.append((u, ending))
            decisions = endings.end_attempts(s, [e for _, e in ends])
            for u, e in ends:
                decision = decisions.get(u.attempt_id)
                if decision is None:
                    log.error(
                        "attempt %s already had an outcome; %s ignored", u.attempt_id, e.outcome
                    )
                    continue
                done.append(FinishedAttempt(u.attempt_id, e.outcome, u, decision.next_attempt_at))
            endings.write_states(s, {a: st for a, st in states.items() if a in rows})
        return done

    def ending(self, f: Finished, row: Any, say: IvrSay | None) -> endings.Ending | None:
        """The outcome and facts ``f`` writes to its attempt ``row`` (``endings.ATTEMPTS``
        columns); ``say``: the IVR session's record of the call (``ivr_says``), if any."""
        if row is None:
            log.error("finished attempt %s has no row", f.attempt_id)
            return None
        if row.owner is not None and row.owner != self.owner:
            # another worker took the switch over while this one was cut off: it follows the
            # call now, and only the owner writes an outcome
            log.warning(
                "attempt %s is followed by worker %s now; %s not written",
                f.attempt_id,
                row.owner,
                f.outcome,
            )
            return None
        outcome, result = f.outcome, f.result
        if f.facts is not None:
            verdict = decide(f.facts, say)
            outcome, result = verdict.outcome, verdict.result
        elif outcome is Outcome.UNKNOWN:  # no trace on the switch: the store may know
            verdict = decide_untraced(say)
            outcome, result = verdict.outcome, verdict.result or result
            if outcome is not Outcome.UNKNOWN:
                self.recovered_from_store += 1
        detail = dict(row.detail or {})
        detail.update({"end_reason": f.end_reason, **f.detail})
        if f.resynced:
            detail["resynced"] = True
        if f.ringing_at is not None:  # no column for it; pacing's ring-time estimate reads it
            detail["ringing_at"] = f.ringing_at
        facts = hopper.AttemptFacts(
            result=result,
            live_answer=f.live_answer,
            answered_at=_ts(f.answered_at),
            greeting_end_at=_ts(f.greeting_end_at),
            queued_at=_ts(f.queued_at),
            bridged_at=_ts(f.bridged_at),
            message_played_at=_ts(f.message_played_at),
            ended_at=_ts(f.ended_at),
            originate_reason=f.originate_reason,
            hangup_cause=f.hangup_cause,
            amd_status=f.amd_status,
            queue=f.queue or row.queue,
            agent=f.agent,
            detail=detail,
        )
        ended = dt.datetime.fromtimestamp(f.ended_at, dt.UTC)
        return endings.Ending(row, outcome, ended, facts)
