"""The end-of-run report a compliance officer files (``dialer report``, the console's report page).

Computed from the store only (attempt, ivr_session and ivr_step rows), over attempts CREATED
in ``[--from, --to)``:

- outcomes and business results;
- answer rate (answered / attempts) and abandon rate (abandoned / live answers, DESIGN.md
  section 9) with, for EVERY abandoned call, the evidence US/UK rules ask operators to keep:
  answer time, greeting/AMD end, queue entry, bridge time (none), when the message was played,
  and the wait;
- connects per agent-hour and occupancy. Without login data, an agent's hours are derived from
  the attempts they handled: from their first bridge to their last hang-up plus one wrap-up
  (``--agent-hours`` gives the staffed hours when known); occupancy = (talk + wrap-up) / hours;
- IVR results by flow step; hourly answer and abandon rates, and a PNG chart of them.

Phone numbers appear masked; no contact fields are read.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dialer.errors import ConfigError
from dialer.lists.campaigns import get_campaign, spec_of
from dialer.lists.handling import handle_rows, handle_times
from dialer.lists.stats import AbandonRate
from dialer.outcomes import Outcome
from dialer.privacy import mask_phone, scrub_json
from dialer.store.models import Attempt, IvrSession, IvrStep

DEFAULT_TZ = "Asia/Shanghai"
EVIDENCE_FIELDS = (
    "answered_at",
    "greeting_end_at",
    "queued_at",
    "bridged_at",
    "message_played_at",
    "ended_at",
)


def zone_named(tz: str) -> ZoneInfo:
    """The zone, or ``ConfigError`` naming the unknown one."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {tz!r}") from exc


def parse_bound(value: str | None, tz: str = DEFAULT_TZ) -> dt.datetime | None:
    """``2026-11-30`` (local midnight), ``2026-11-30T09:00`` (local) or with an offset."""
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:
            d = dt.date.fromisoformat(value)
            parsed = dt.datetime(d.year, d.month, d.day)
        else:
            parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(
            f"expected a date or date-time like 2026-11-30T09:00, got {value!r}"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone_named(tz))
    return parsed.astimezone(dt.UTC)


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.astimezone(dt.UTC).isoformat(timespec="seconds")


def _secs(a: dt.datetime | None, b: dt.datetime | None) -> float | None:
    return None if a is None or b is None else round((b - a).total_seconds(), 3)


def _ratio(n: float, d: float) -> float | None:
    return n / d if d else None


def build_report(
    session: Session,
    campaign: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    tz: str = DEFAULT_TZ,
    agent_hours: float | None = None,
) -> dict[str, Any]:
    """The campaign's report. Free text in it (agents' and queues' names, IVR results a bank
    hook set) is scrubbed of card and ID numbers; the campaign's own name is an identifier."""
    body = _build_report(
        session, campaign, since=since, until=until, tz=tz, agent_hours=agent_hours
    )
    return {**scrub_json(body), "campaign": body["campaign"]}


def _build_report(
    session: Session,
    campaign: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    tz: str = DEFAULT_TZ,
    agent_hours: float | None = None,
) -> dict[str, Any]:
    zone = zone_named(tz)
    row = get_campaign(session, campaign)
    spec = spec_of(row)
    q = (
        select(Attempt)
        .where(Attempt.campaign_id == row.id)
        .order_by(Attempt.created_at, Attempt.id)
    )
    if since is not None:
        q = q.where(Attempt.created_at >= since)
    if until is not None:
        q = q.where(Attempt.created_at < until)
    attempts = list(session.scalars(q))

    outcomes = Counter(a.outcome or "unfinished" for a in attempts)
    results = Counter(a.result for a in attempts if a.result)
    answered = sum(1 for a in attempts if a.answered_at is not None)
    rate = AbandonRate(
        live_answers=sum(1 for a in attempts if a.live_answer),
        abandoned=sum(1 for a in attempts if a.outcome == Outcome.ABANDONED.value),
    )

    abandoned_calls = _abandoned_calls(attempts)
    wrapup = spec.pacing.wrapup_s
    handled = handle_times(handle_rows(session, since=since, until=until, campaign=row.name))
    agents = _agents(attempts, wrapup, {a["name"]: a for a in handled["by_agent"]})
    connects = sum(1 for a in attempts if a.bridged_at is not None)
    derived_hours = sum(ag["hours"] for ag in agents)
    hours = agent_hours if agent_hours is not None else derived_hours
    busy_s = sum(ag["talk_s"] for ag in agents) + wrapup * sum(ag["connects"] for ag in agents)
    hourly = _hourly(attempts, zone)

    return {
        "campaign": row.name,
        "from": _iso(since),
        "to": _iso(until),
        "tz": tz,
        "attempts": len(attempts),
        "outcomes": dict(sorted(outcomes.items())),
        "results": dict(sorted(results.items())),
        "answered": answered,
        "answer_rate": _ratio(answered, len(attempts)),
        "abandon": {
            "live_answers": rate.live_answers,
            "abandoned": rate.abandoned,
            "rate": rate.rate,
            "cap": spec.pacing.abandon_cap,
            "hold_limit_s": spec.pacing.hold_limit_s,
            "within_cap": rate.rate <= spec.pacing.abandon_cap,
        },
        "abandoned_calls": abandoned_calls,
        "connects": connects,
        "agent_hours": round(hours, 4),
        "agent_hours_basis": "given" if agent_hours is not None else "derived from attempts",
        "connects_per_agent_hour": _ratio(connects, hours),
        "occupancy": min(1.0, busy_s / (hours * 3600)) if hours else None,
        "agents": agents,
        "handle_time": handled["all"],
        "handle_time_by_queue": handled["by_queue"],
        "ivr": _ivr(session, [a.id for a in attempts]),
        "hourly": hourly,
        "channels": _channels(session, row.id),
    }


def _abandoned_calls(attempts: list[Attempt]) -> list[dict[str, Any]]:
    """Every abandoned call with the evidence US/UK rules ask operators to keep."""
    abandoned_calls = []
    for a in attempts:
        if a.outcome != Outcome.ABANDONED.value:
            continue
        start_wait = a.greeting_end_at or a.answered_at
        abandoned_calls.append(
            {
                "attempt_id": a.id,
                "phone": mask_phone(a.phone),
                "queue": a.queue,
                "amd_status": a.amd_status,
                **{f: _iso(getattr(a, f)) for f in EVIDENCE_FIELDS},
                "wait_s": _secs(start_wait, a.bridged_at or a.message_played_at or a.ended_at),
                "message_played": a.message_played_at is not None,
            }
        )
    return abandoned_calls


def _agents(
    attempts: list[Attempt], wrapup: float, handled: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Agents: connects, talk, the span they were seen working (plus one wrap-up), and their
    average handle time from the records (``dialer.lists.handling``)."""
    per_agent: dict[str, dict[str, Any]] = {}
    for a in attempts:
        if a.bridged_at is None or not a.agent:
            continue
        end = a.ended_at or a.bridged_at
        ag = per_agent.setdefault(
            a.agent,
            {"agent": a.agent, "connects": 0, "talk_s": 0.0, "first": a.bridged_at, "last": end},
        )
        ag["connects"] += 1
        ag["talk_s"] += (end - a.bridged_at).total_seconds()
        ag["first"] = min(ag["first"], a.bridged_at)
        ag["last"] = max(ag["last"], end)
    agents = []
    for ag in sorted(per_agent.values(), key=lambda x: x["agent"]):
        hours = ((ag["last"] - ag["first"]).total_seconds() + wrapup) / 3600
        busy = ag["talk_s"] + wrapup * ag["connects"]
        agents.append(
            {
                "agent": ag["agent"],
                "connects": ag["connects"],
                "talk_s": round(ag["talk_s"], 1),
                "hours": round(hours, 4),
                "occupancy": round(min(1.0, busy / (hours * 3600)), 4) if hours else None,
                "wrapup_s": handled.get(ag["agent"], {}).get("wrapup_s"),
                "aht_s": handled.get(ag["agent"], {}).get("aht_s"),
            }
        )
    return agents


def _hourly(attempts: list[Attempt], zone: ZoneInfo) -> list[dict[str, Any]]:
    """Hourly answer and abandon rates, in the report's zone."""
    buckets: dict[dt.datetime, Counter[str]] = defaultdict(Counter)
    for a in attempts:
        hour = a.created_at.astimezone(zone).replace(minute=0, second=0, microsecond=0)
        b = buckets[hour]
        b["attempts"] += 1
        b["answered"] += a.answered_at is not None
        b["live_answers"] += a.live_answer
        b["abandoned"] += a.outcome == Outcome.ABANDONED.value
    hourly = [
        {
            "hour": h.isoformat(timespec="minutes"),
            "attempts": b["attempts"],
            "answered": b["answered"],
            "live_answers": b["live_answers"],
            "abandoned": b["abandoned"],
            "answer_rate": _ratio(b["answered"], b["attempts"]) or 0.0,
            "abandon_rate": _ratio(b["abandoned"], b["live_answers"]) or 0.0,
        }
        for h, b in sorted(buckets.items())
    ]
    return hourly


_HANDED_OVER = ("accepted", "in_doubt", "sent", "delivered", "failed", "expired", "unknown")
_REPLY_KEYS = {"opt_out": "opted_out", "confirm": "confirmed", "deny": "denied"}


def _channels(session: Session, campaign_id: int) -> list[dict[str, Any]]:
    """SMS and e-mail of the campaign, per channel and step: sent, delivered, failed,
    suppressed (DNC, bad address), replies by kind (opted out, confirmed, denied, free text)."""
    from dialer.store.messages import InboundMessage, Message

    rows: dict[tuple[str, int], dict[str, int]] = {}

    def cell(channel: str, step: int | None) -> dict[str, int]:
        return rows.setdefault(
            (channel, step or 0),
            dict.fromkeys(
                ("messages", "sent", "delivered", "failed", "suppressed", "replies",
                 "opted_out", "confirmed", "denied", "free_text"),
                0,
            ),
        )  # fmt: skip

    for channel, step, state, n in session.execute(
        select(Message.channel, Message.step, Message.state, func.count())
        .where(Message.campaign_id == campaign_id)
        .group_by(Message.channel, Message.step, Message.state)
    ):
        c = cell(channel, step)
        c["messages"] += n
        c["sent"] += n if state in _HANDED_OVER else 0
        c["delivered"] += n if state == "delivered" else 0
        c["failed"] += n if state in ("failed", "expired") else 0
        c["suppressed"] += n if state == "suppressed" else 0
    for channel, step, action, n in session.execute(
        select(Message.channel, Message.step, InboundMessage.action, func.count())
        .join(Message, InboundMessage.message_id == Message.id)
        .where(Message.campaign_id == campaign_id)
        .group_by(Message.channel, Message.step, InboundMessage.action)
    ):
        c = cell(channel, step)
        c["replies"] += n
        c[_REPLY_KEYS.get(action, "free_text")] += n
    return [{"channel": ch, "step": st, **c} for (ch, st), c in sorted(rows.items())]


def _ivr(session: Session, attempt_ids: list[int]) -> dict[str, Any]:
    if not attempt_ids:
        return {"sessions": [], "steps": []}
    chunks = [attempt_ids[i : i + 500] for i in range(0, len(attempt_ids), 500)]
    sessions: Counter[tuple[str, str, str | None]] = Counter()
    steps: Counter[tuple[str, int, str, str, str | None]] = Counter()
    for ids in chunks:
        for flow, status, result, n in session.execute(
            select(IvrSession.flow, IvrSession.status, IvrSession.result, func.count())
            .where(IvrSession.attempt_id.in_(ids))
            .group_by(IvrSession.flow, IvrSession.status, IvrSession.result)
        ):
            sessions[(flow, status, result)] += n
        for flow, seq, node, kind, outcome, n in session.execute(
            select(
                IvrSession.flow,
                IvrStep.seq,
                IvrStep.node,
                IvrStep.kind,
                IvrStep.outcome,
                func.count(),
            )
            .join(IvrSession, IvrStep.session_id == IvrSession.id)
            .where(IvrSession.attempt_id.in_(ids))
            .group_by(IvrSession.flow, IvrStep.seq, IvrStep.node, IvrStep.kind, IvrStep.outcome)
        ):
            steps[(flow, seq, node, kind, outcome)] += n
    return {
        "sessions": [
            {"flow": f, "status": s, "result": r, "count": n}
            for (f, s, r), n in sorted(
                sessions.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")
            )
        ],
        "steps": [
            {"flow": f, "seq": q, "node": nd, "kind": k, "outcome": o, "count": n}
            for (f, q, nd, k, o), n in sorted(
                steps.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][4] or "")
            )
        ],
    }


# --- renderings ---------------------------------------------------------------------------


def to_csv(report: dict[str, Any]) -> str:
    """Long format, one file: ``section,key,field,value``."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["section", "key", "field", "value"])
    for k in (
        "campaign",
        "from",
        "to",
        "tz",
        "attempts",
        "answered",
        "answer_rate",
        "connects",
        "agent_hours",
        "agent_hours_basis",
        "connects_per_agent_hour",
        "occupancy",
    ):
        w.writerow(["summary", k, "value", report[k]])
    for k, v in report["abandon"].items():
        w.writerow(["abandon", "rate", k, v])
    for k, v in report["outcomes"].items():
        w.writerow(["outcome", k, "count", v])
    for k, v in report["results"].items():
        w.writerow(["result", k, "count", v])
    for call in report["abandoned_calls"]:
        for k, v in call.items():
            if k != "attempt_id":
                w.writerow(["abandoned_call", call["attempt_id"], k, v])
    for ag in report["agents"]:
        for k, v in ag.items():
            if k != "agent":
                w.writerow(["agent", ag["agent"], k, v])
    for k, v in report["handle_time"].items():
        if k != "name":
            w.writerow(["handle_time", "all", k, v])
    for q in report["handle_time_by_queue"]:
        for k, v in q.items():
            if k != "name":
                w.writerow(["handle_time", f"queue:{q['name']}", k, v])
    for s in report["ivr"]["sessions"]:
        w.writerow(
            ["ivr_session", f"{s['flow']}/{s['status']}/{s['result'] or ''}", "count", s["count"]]
        )
    for s in report["ivr"]["steps"]:
        w.writerow(
            [
                "ivr_step",
                f"{s['flow']}/{s['seq']}:{s['node']}/{s['outcome'] or ''}",
                "count",
                s["count"],
            ]
        )
    for h in report["hourly"]:
        for k, v in h.items():
            if k != "hour":
                w.writerow(["hourly", h["hour"], k, v])
    return out.getvalue()


def _secs_text(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} s"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f}%"


def to_text(r: dict[str, Any]) -> str:
    ab = r["abandon"]
    lines = [
        f"Campaign {r['campaign']}  ({r['from'] or 'start'} .. {r['to'] or 'now'}, hours in {r['tz']})",
        f"  attempts {r['attempts']}   answered {r['answered']} ({_pct(r['answer_rate'])})   connects {r['connects']}",
        f"  abandon rate {_pct(ab['rate'])} = {ab['abandoned']} / {ab['live_answers']} live answers"
        f"   cap {_pct(ab['cap'])}   {'within cap' if ab['within_cap'] else 'OVER CAP'}",
        f"  agent-hours {r['agent_hours']:.2f} ({r['agent_hours_basis']})"
        f"   connects/agent-hour {r['connects_per_agent_hour'] or 0:.1f}   occupancy {_pct(r['occupancy'])}",
        f"  average handle time {_secs_text(r['handle_time']['aht_s'])}"
        f" (talk + wrap-up over {r['handle_time']['calls']} handled calls)",
        "",
        "Outcomes:",
        *(f"  {k:18} {v:>6}" for k, v in r["outcomes"].items()),
    ]
    if r["results"]:
        lines += ["Results:", *(f"  {k:18} {v:>6}" for k, v in r["results"].items())]
    lines += ["", f"Abandoned calls ({len(r['abandoned_calls'])}):"]
    for c in r["abandoned_calls"]:
        lines.append(
            f"  #{c['attempt_id']} {c['phone']} answered {c['answered_at']} greeting end {c['greeting_end_at']}"
            f" bridged {c['bridged_at'] or 'never'} message {c['message_played_at'] or 'NOT played'} wait {c['wait_s']}s"
        )
    if r["ivr"]["steps"]:
        lines += ["", "IVR steps:"]
        lines += [
            f"  {s['flow']:20} {s['seq']:>2} {s['node']:16} {s['kind']:8} {s['outcome'] or '-':14} {s['count']:>5}"
            for s in r["ivr"]["steps"]
        ]
    if r.get("channels"):
        lines += [
            "",
            "SMS and e-mail:   step  sent  delivered  failed  suppressed  replies  "
            "opted-out  confirmed  denied  free-text",
        ]
        lines += [
            f"  {c['channel']:14} {c['step']:>5} {c['sent']:>5} {c['delivered']:>10} "
            f"{c['failed']:>7} {c['suppressed']:>11} {c['replies']:>8} {c['opted_out']:>10} "
            f"{c['confirmed']:>10} {c['denied']:>7} {c['free_text']:>10}"
            for c in r["channels"]
        ]
    if r["hourly"]:
        lines += ["", "Hourly:          attempts  answer   abandon"]
        lines += [
            f"  {h['hour'][:16]} {h['attempts']:>7} {_pct(h['answer_rate']):>8} {_pct(h['abandon_rate']):>8}"
            for h in r["hourly"]
        ]
    return "\n".join(lines)


def write_chart(report: dict[str, Any], path: Path) -> None:
    """PNG of hourly answer and abandon rates (abandon against the cap)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    days = {h["hour"][:10] for h in report["hourly"]}
    hours = [
        h["hour"][11:16] if len(days) < 2 else h["hour"][5:16].replace("T", " ")
        for h in report["hourly"]
    ]
    x = list(range(len(hours)))
    step = max(1, len(x) // 12)  # at most ~12 labels
    fig = Figure(figsize=(9, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    ax1.bar(x, [h["answer_rate"] * 100 for h in report["hourly"]], color="#2563eb")
    ax1.set_ylabel("answer rate %")
    ax1.set_ylim(0, 100)
    ax1.set_title(f"{report['campaign']}: hourly answer and abandon rates ({report['tz']})")
    ax2.bar(x, [h["abandon_rate"] * 100 for h in report["hourly"]], color="#d92d20")
    ax2.axhline(report["abandon"]["cap"] * 100, color="#7a271a", linestyle="--", label="cap")
    ax2.set_ylabel("abandon rate %")
    ax2.legend(loc="upper right")
    ax2.set_xticks(x[::step], hours[::step], rotation=0 if len(days) < 2 else 30)
    ax2.set_xlabel("hour")
    for ax in (ax1, ax2):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
