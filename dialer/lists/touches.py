"""A contact's touches: what its one budget and its one per-day cap count, in every channel.

The model a bank expects (and the campaign file declares): ``max_attempts`` is the contact's
budget for the campaign, spent by each call (an attempt row, written before the Originate)
and by each message of a counted step (every SMS and e-mail step unless it says
``counts: false``, e.g. a statement e-mail that is a notice rather than a contact attempt).
``contact.attempts`` is the budget spent so far, whatever the channel. ``daily_cap`` (the
campaign file; default the settings' ``max_calls_per_number_per_day``) bounds the touches of
one contact on one local day of ITS zone, counted the same way. The hopper (calls) and the
steps' sequencer (messages) read the same facts through ``touches`` and judge them with the
same function (``compliance.attempts_on_local_day``).

When a message counts on a day: once handed to the gateway, on the day of the hand-over;
before that (queued, or waiting for the number's SMS cap to reopen) on the day it is judged,
since it may go out any moment; ended without a hand-over, on the day it was queued (the
budget it took is not given back).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from dialer.lists import prepared
from dialer.store.messages import Message
from dialer.store.models import Attempt

#: Touches that can fall on a contact's current local day lie within this distance of now.
DAY_REACH = dt.timedelta(hours=27)
_IN_CHUNK = 500


def _chunks(items: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i : i + _IN_CHUNK]


def message_touch_time(
    created: dt.datetime, submitted: dt.datetime | None, ended: dt.datetime | None, now: dt.datetime
) -> dt.datetime:
    if submitted is not None:
        return submitted
    return now if ended is None else created


def _collect(
    session: Session, now: dt.datetime, attempt_filter: Any, message_filter: Any
) -> dict[int, list[dt.datetime]]:
    lo, hi = now - DAY_REACH, now + DAY_REACH
    out: dict[int, list[dt.datetime]] = defaultdict(list)
    for cid, created in session.execute(
        select(Attempt.contact_id, Attempt.created_at).where(
            attempt_filter, Attempt.created_at.between(lo, hi)
        )
    ):
        if cid is not None:
            out[cid].append(created)
    for cid, created, submitted, ended in session.execute(
        select(
            Message.contact_id, Message.created_at, Message.submitted_at, Message.ended_at
        ).where(
            message_filter,
            Message.budget.is_(True),
            or_(Message.created_at >= lo, Message.submitted_at >= lo, Message.ended_at.is_(None)),
        )
    ):
        t = message_touch_time(created, submitted, ended, now)
        if cid is not None and lo <= t <= hi:
            out[cid].append(t)
    return out


def contact_touches(
    session: Session, contact_ids: Iterable[int], now: dt.datetime
) -> dict[int, tuple[dt.datetime, ...]]:
    """Each contact's touches near ``now`` (calls and counted messages); absent: none."""
    ids = sorted(set(contact_ids))
    lo, hi = now - DAY_REACH, now + DAY_REACH
    out: dict[int, list[dt.datetime]] = defaultdict(list)
    for part in _chunks(ids):
        params = {"ids": list(part), "lo": lo, "hi": hi}
        for cid, created in session.execute(prepared.CONTACT_CALLS, params):
            out[cid].append(created)
        for cid, created, submitted, ended in session.execute(prepared.CONTACT_MESSAGES, params):
            t = message_touch_time(created, submitted, ended, now)
            if lo <= t <= hi:
                out[cid].append(t)
    return {cid: tuple(sorted(times)) for cid, times in out.items()}


def campaign_touches(
    session: Session, campaign_id: int, now: dt.datetime
) -> dict[int, tuple[dt.datetime, ...]]:
    """``contact_touches`` for every contact of a campaign that has any near ``now``."""
    got = _collect(
        session, now, Attempt.campaign_id == campaign_id, Message.campaign_id == campaign_id
    )
    return {cid: tuple(sorted(times)) for cid, times in got.items()}


__all__ = ["DAY_REACH", "campaign_touches", "contact_touches", "message_touch_time"]
