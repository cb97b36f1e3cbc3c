"""The agent's desktop: a page and an API bound to the signed-in agent's phone.

    GET  /desk                     the page (Mandarin and English, no CDN)
    GET  /api/desk                 who I am, my state on the switch, my campaigns (script,
                                   disposition form), pause reasons, the current screen-pop
    GET  /api/desk/events          server-sent events: ``pop`` the moment the switch reports
                                   ``AgentConnect`` for my interface, ``state`` every second
    POST /api/desk/queues          {"action": "login"|"logout"}: QueueAdd/QueueRemove to my
                                   campaigns' queues (logged in paused: "ready" starts calls)
    POST /api/desk/state           {"state": "ready"} | {"state": "pause", "reason": "break"}
    POST /api/desk/disposition     {"attempt_id", "code", "fields", "notes", "callback_at"?,
                                   "personal"?}: saved against a call that popped on my screen
    POST /api/desk/next            {"campaign"}: preview - the next contact, offered (held
                                   for me ``PREVIEW_HOLD``, not dialled): customer, fields,
                                   history, script
    POST /api/desk/preview/dial    {"campaign", "contact_id"}: dial the contact offered
    POST /api/desk/preview/skip    {"campaign", "contact_id", "reason"}: skip it with a reason
                                   from the campaign's ``skip_reasons`` (recorded, audited;
                                   the reason's rule decides the contact's next attempt)
    POST /api/desk/manual          {"campaign", "number"}: a typed number, under every rule
    POST /api/agents/force         supervisors: {"interface" (or "agent": the name the
                                   supervisor page shows), "action": "pause"|"logout",
                                   "reason"?} on an agent of theirs

An agent acts only on their own interface (from their user record, never from the request)
and sees only calls that were handed to it. Screen-pops carry no card or ID digits in clear:
fields the campaign marks sensitive are hidden, every other value is scrubbed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select

from dialer.audit import AuditAction
from dialer.errors import AccessDenied, ConfigError, DialerError
from dialer.floor.console.access import PRINCIPAL
from dialer.floor.console.keys import CLOSING, FLOOR, STORE
from dialer.floor.console.replies import body, error, reply
from dialer.floor.desk import PAUSE_REASONS, WRAPUP_REASON, AgentDesk, Connected, DeskFloor
from dialer.floor.dialing import manual_dial, preview_dial
from dialer.lists.campaigns import spec_of
from dialer.lists.handling import DEFAULT_WRAPUP_LIMIT_S
from dialer.lists.preview import offer, skip_offered
from dialer.lists.users import Role, UserView
from dialer.lists.wrapup import save_disposition
from dialer.privacy import is_hashed, mask_phone, scrub, scrub_json
from dialer.store.models import Attempt, AuditEntry, Campaign, Contact, IvrSession, IvrStep
from dialer.store.people import Disposition, PreviewSkip

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
HISTORY_MAX = 20
POPS_KEPT = 50  # calls per agent a disposition may still be saved for
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- the screen-pop ---------------------------------------------------------------------------


def _field_value(value: Any, sensitive: bool) -> str:
    if sensitive or is_hashed(value):
        return "(hidden)"
    return scrub(str(value))


def contact_view(s: Any, spec: Any, contact: Contact | None, current: int | None) -> dict[str, Any]:
    """The customer, the campaign's fields (sensitive ones hidden), the history and the
    script: what a pop and a preview offer show of one contact."""
    fields = {}
    for name, value in ((contact.fields or {}) if contact else {}).items():
        fs = spec.fields.get(name)
        fields[name] = _field_value(value, bool(fs and fs.sensitive))
    return {
        "campaign": spec.name,
        "customer": {
            "name": scrub(contact.name or "") if contact else None,
            "phone": mask_phone(contact.phone) if contact else None,
            "language": contact.language if contact else None,
            "attempts": contact.attempts if contact else None,
        },
        "fields": fields,
        "history": _history(s, contact, current) if contact is not None else [],
        "script": spec.script,
    }


def pop_view(store: Any, attempt_id: int) -> dict[str, Any]:
    """(In a thread.) What the agent sees of one call; no digit in clear that identifies."""
    with store.session() as s:
        attempt = s.get(Attempt, attempt_id)
        if attempt is None:
            return {"attempt_id": attempt_id, "missing": True}
        campaign = s.get(Campaign, attempt.campaign_id)
        assert campaign is not None
        spec = spec_of(campaign)
        contact = s.get(Contact, attempt.contact_id) if attempt.contact_id else None
        ivr = []
        for sess in s.scalars(select(IvrSession).where(IvrSession.attempt_id == attempt_id)):
            steps = s.scalars(
                select(IvrStep).where(IvrStep.session_id == sess.id).order_by(IvrStep.seq)
            )
            ivr.append(
                {
                    "flow": sess.flow,
                    "status": sess.status,
                    "result": sess.result,
                    "data": scrub_json(sess.data or {}),
                    "steps": [{"node": st.node, "outcome": st.outcome} for st in steps],
                }
            )
        view = contact_view(s, spec, contact, attempt_id)
        view["customer"]["phone"] = mask_phone(attempt.phone)
        return {"attempt_id": attempt_id, **view, "ivr": ivr}


def _history(s: Any, contact: Contact, current: int | None) -> list[dict[str, Any]]:
    """The contact's attempts (with their last disposition) and preview skips, newest first."""
    q = select(Attempt).where(Attempt.contact_id == contact.id)
    if current is not None:
        q = q.where(Attempt.id != current)
    rows = s.scalars(q.order_by(Attempt.id.desc()).limit(HISTORY_MAX))
    out = []
    for a in rows:
        last = s.scalars(
            select(Disposition)
            .where(Disposition.attempt_id == a.id)
            .order_by(Disposition.id.desc())
            .limit(1)
        ).first()
        out.append(
            {
                "at": a.created_at.isoformat(timespec="seconds"),
                "outcome": a.outcome,
                "result": a.result,
                "disposition": last.code if last else None,
                "notes": last.notes if last else None,
            }
        )
    skips = s.scalars(
        select(PreviewSkip)
        .where(PreviewSkip.contact_id == contact.id)
        .order_by(PreviewSkip.id.desc())
        .limit(HISTORY_MAX)
    )
    for k in skips:
        out.append(
            {
                "at": k.at.isoformat(timespec="seconds"),
                "outcome": None,
                "result": None,
                "disposition": None,
                "skipped": k.reason,
                "by": k.agent,
                "notes": None,
            }
        )
    out.sort(key=lambda h: h["at"], reverse=True)
    return out[:HISTORY_MAX]


@dataclass
class _Seat:
    """One interface's screen: its latest pop and the calls it was handed."""

    pop: dict[str, Any] | None = None
    attempts: list[int] = field(default_factory=list)
    saved: set[int] = field(default_factory=set)  # calls whose disposition is saved
    attended: bool = False  # an agent's desktop asked for this interface
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    popped_at: float = 0.0  # how long after AgentConnect the pop was ready (seconds)


class PopHub:
    """Screen-pops by interface, fed by every desk of the floor."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.seats: dict[str, _Seat] = {}
        self._attached: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.latency_s: list[float] = []  # AgentConnect to pop ready, for the record

    def attach(self, desks: list[AgentDesk]) -> None:
        for desk in desks:
            if id(desk) not in self._attached:
                self._attached.add(id(desk))
                desk.on_connect(self._connected)
                desk.on_complete(self._completed)

    def seat(self, interface: str) -> _Seat:
        return self.seats.setdefault(interface, _Seat())

    def _connected(self, c: Connected) -> None:
        seat = self.seats.get(c.interface)
        if seat is None or not seat.attended:
            return  # nobody's desktop shows this phone: no pop, no held wrap-up
        seat.attempts = [*seat.attempts[-POPS_KEPT:], c.attempt_id]
        task = asyncio.get_running_loop().create_task(self._build(c))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _completed(self, interface: str, desk: AgentDesk) -> None:
        """The call ended: wrap-up lasts until the disposition (or the campaign's limit)."""
        seat = self.seats.get(interface)
        pop = seat.pop if seat is not None else None
        if seat is None or not seat.attended or pop is None or pop.get("attempt_id") in seat.saved:
            return
        run = next((r for r in desk.loop.runs.values() if r.spec.name == pop.get("campaign")), None)
        if run is None or not run.spec.dispositions:
            return
        task = asyncio.get_running_loop().create_task(
            _hold_wrapup(desk, interface, run.spec.wrapup_limit_s or DEFAULT_WRAPUP_LIMIT_S)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _build(self, c: Connected) -> None:
        started = asyncio.get_running_loop().time()
        view = await asyncio.to_thread(pop_view, self.store, c.attempt_id)
        seat = self.seat(c.interface)
        seat.pop = {**view, "queue": c.queue, "connected_at": c.at}
        seat.popped_at = asyncio.get_running_loop().time() - started
        self.latency_s.append(seat.popped_at)
        seat.changed.set()
        seat.changed = asyncio.Event()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


async def _hold_wrapup(desk: AgentDesk, interface: str, limit_s: float | None) -> None:
    try:
        await desk.hold_wrapup(interface, limit_s)
    except DialerError as exc:  # the switch refused or went away: the call is over anyway
        log.warning("wrap-up of %s not held: %s", interface, exc)


HUB = web.AppKey("pop_hub", PopHub)


# --- who and where ----------------------------------------------------------------------------


def _me(request: web.Request) -> UserView:
    user = request[PRINCIPAL].user
    if user is None or not user.interface:
        raise AccessDenied("the desktop is for a signed-in user bound to a phone (--interface)")
    return user


def _floor(request: web.Request) -> Any:
    return request.app[FLOOR]


def _desks(request: web.Request) -> list[AgentDesk]:
    floor = _floor(request)
    if not isinstance(floor, DeskFloor) or not floor.desks():
        raise web.HTTPNotFound(
            text='{"error": "this console serves no switch"}', content_type="application/json"
        )
    desks = floor.desks()
    hub = request.app.get(HUB)
    if hub is not None:
        hub.attach(desks)
    return desks


def _desk_for(request: web.Request, interface: str) -> AgentDesk:
    desks = _desks(request)
    for desk in desks:  # the switch that knows the member, else one that is up
        if desk.agent(interface) is not None:
            return desk
    return next((d for d in desks if d.ready), desks[0])


def _store(request: web.Request) -> Any:
    store = request.app.get(STORE)
    if store is None:
        raise web.HTTPNotFound(
            text='{"error": "the desktop needs the store"}', content_type="application/json"
        )
    return store


def _campaigns(desk: AgentDesk, user: UserView) -> list[dict[str, Any]]:
    out = []
    for run in desk.loop.runs.values():
        spec = run.spec
        if not spec.queue or not user.may_see_campaign(spec.name):
            continue
        out.append(
            {
                "name": spec.name,
                "queue": spec.queue,
                "mode": spec.mode.value,
                "script": spec.script,
                "wrapup_limit_s": spec.wrapup_limit_s,
                "dispositions": {
                    code: {
                        "label": d.title(code, user.language),
                        "fields": {k: f.type.value for k, f in d.fields.items()},
                        "required": [k for k, f in d.fields.items() if f.required],
                        "then": d.then,
                    }
                    for code, d in spec.dispositions.items()
                },
                "fields": sorted(spec.fields),
                "skip_reasons": {
                    code: r.title(code, user.language) for code, r in spec.skips.items()
                },
            }
        )
    return sorted(out, key=lambda c: c["name"])


def _state(desk: AgentDesk, interface: str) -> dict[str, Any]:
    agent = desk.agent(interface)
    if agent is None:
        return {"state": "logged_out", "queues": [], "pause_reason": None, "seconds": 0}
    return {
        "state": agent.effective_state.value,
        "queues": sorted(agent.queues),
        "pause_reason": agent.pause_reason,
        "seconds": max(0, round(desk.loop.clock.time() - agent.since)),
        "calls_handled": agent.calls_handled,
    }


async def _audit(request: web.Request, action: AuditAction, **detail: Any) -> None:
    store = _store(request)
    actor = request[PRINCIPAL].actor(None)

    def run() -> None:
        with store.session() as s:
            s.add(AuditEntry(actor=actor, action=action, detail=detail))

    await asyncio.to_thread(run)


# --- routes -----------------------------------------------------------------------------------


async def page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "desk.html", headers={"Cache-Control": "no-cache"})


async def get_desk(request: web.Request) -> web.Response:
    me = _me(request)
    desk = _desk_for(request, me.interface or "")
    seat = request.app[HUB].seat(me.interface or "")
    seat.attended = True
    return reply(
        {
            "user": me.to_json(),
            "agent": _state(desk, me.interface or ""),
            "campaigns": _campaigns(desk, me),
            "pause_reasons": list(PAUSE_REASONS),
            "pop": seat.pop,
        }
    )


async def desk_events(request: web.Request) -> web.StreamResponse:
    me = _me(request)
    iface = me.interface or ""
    desk = _desk_for(request, iface)
    seat = request.app[HUB].seat(iface)
    seat.attended = True
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await resp.prepare(request)
    closing = request.app[CLOSING]
    sent = None
    try:
        await resp.write(b"retry: 1000\n\n")
        while not closing.is_set():
            if seat.pop is not None and seat.pop is not sent:
                sent = seat.pop
                data = json.dumps(seat.pop, ensure_ascii=False, default=str)
                await resp.write(b"event: pop\ndata: " + data.encode() + b"\n\n")
            state = json.dumps(_state(desk, iface), ensure_ascii=False)
            await resp.write(b"event: state\ndata: " + state.encode() + b"\n\n")
            try:
                await asyncio.wait_for(seat.changed.wait(), 1.0)
            except TimeoutError:
                pass
    except ConnectionResetError:
        pass
    return resp


async def post_queues(request: web.Request) -> web.Response:
    me = _me(request)
    iface = me.interface or ""
    data = await body(request)
    action = data.get("action")
    desk = _desk_for(request, iface)
    queues = sorted({c["queue"] for c in _campaigns(desk, me)})
    if not queues:
        return error(409, "none of your campaigns runs with an agent queue")
    if action == "login":
        done = await desk.join(iface, me.display_name or me.username, queues, paused=True)
        await _audit(request, AuditAction.AGENT_QUEUE_LOGIN, interface=iface, queues=done)
    elif action == "logout":
        done = await desk.leave(iface, queues)
        await _audit(request, AuditAction.AGENT_QUEUE_LOGOUT, interface=iface, queues=done)
    else:
        return error(400, 'action is "login" or "logout"')
    return reply({"action": action, "queues": done})


async def post_state(request: web.Request) -> web.Response:
    me = _me(request)
    iface = me.interface or ""
    data = await body(request)
    desk = _desk_for(request, iface)
    if data.get("state") == "ready":
        await desk.unpause(iface)
        await _audit(request, AuditAction.AGENT_READY, interface=iface)
    elif data.get("state") == "pause":
        reason = data.get("reason")
        if reason not in PAUSE_REASONS:
            return error(400, f"reason is one of {', '.join(PAUSE_REASONS)}")
        await desk.pause(iface, str(reason))
        await _audit(request, AuditAction.AGENT_PAUSE, interface=iface, reason=reason)
    else:
        return error(400, 'state is "ready" or "pause" (with a reason)')
    return reply({"ok": True})


async def post_disposition(request: web.Request) -> web.Response:
    me = _me(request)
    iface = me.interface or ""
    data = await body(request)
    try:
        attempt_id = int(data.get("attempt_id"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return error(400, "attempt_id is the number of the call on your screen")
    seat = request.app[HUB].seat(iface)
    store = _store(request)
    now = _floor(request).now()  # the floor's clock (a rehearsal runs on its own)

    def run() -> dict[str, Any]:
        with store.session() as s:
            attempt = s.get(Attempt, attempt_id)
            mine = attempt is not None and (
                attempt_id in seat.attempts or attempt.agent in (iface, me.username)
            )
            if not mine:
                raise AccessDenied(f"call {attempt_id} was not handed to you")
            saved = save_disposition(
                s,
                attempt_id,
                str(data.get("code") or ""),
                data.get("fields") or {},
                data.get("notes"),
                agent=me.username,
                now=now,
                callback_at=data.get("callback_at") or None,
                personal=data.get("personal", True) is not False,
            )
            return {
                "saved": saved.disposition_id,
                "code": saved.code,
                "then": saved.then,
                "callback": saved.callback_id,
                "next_attempt_at": saved.next_attempt_at,
            }

    out = await asyncio.to_thread(run)  # ConfigError 400, ComplianceError 409, AccessDenied 403
    seat.saved.add(attempt_id)
    desk = _desk_for(request, iface)
    agent = desk.agent(iface)
    if agent is not None and agent.pause_reason == WRAPUP_REASON:
        await desk.unpause(iface)  # the disposition ends the wrap-up
    return reply(out)


def _preview_desk(request: web.Request, me: UserView, name: str) -> AgentDesk:
    if not me.may_see_campaign(name):
        raise AccessDenied(f"campaign {name!r} is not one of yours")
    desk = _desk_for(request, me.interface or "")
    desk.loop.run_named(name)  # ConfigError: no such campaign running
    return desk


def _contact_id(data: dict[str, Any]) -> int:
    try:
        return int(data.get("contact_id"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError("contact_id is the number of the contact offered to you") from None


async def post_next(request: web.Request) -> web.Response:
    """Preview: the next contact of one of my preview campaigns, held for me, not dialled."""
    me = _me(request)
    data = await body(request)
    name = str(data.get("campaign") or "")
    desk = _preview_desk(request, me, name)
    loop = desk.loop
    now = loop.now()

    def run() -> dict[str, Any] | None:
        with loop.store.session() as s:
            row = s.get(Campaign, loop.run_named(name).id)
            assert row is not None
            contact = offer(
                s, row, me.username, now, daily_cap=loop.settings.max_calls_per_number_per_day
            )
            if contact is None:
                return None
            s.flush()
            assert contact.lease_until is not None
            return {
                "contact_id": contact.id,
                **contact_view(s, spec_of(row), contact, None),
                "held_until": contact.lease_until.isoformat(timespec="seconds"),
            }

    offered = await asyncio.to_thread(run)
    return reply({"campaign": name, "contact": offered})


async def post_preview_dial(request: web.Request) -> web.Response:
    """Preview: dial the contact offered to me (409 naming the rule that forbids it now)."""
    me = _me(request)
    data = await body(request)
    name = str(data.get("campaign") or "")
    desk = _preview_desk(request, me, name)
    out = await preview_dial(
        desk.loop, name, _contact_id(data), agent=me.username, interface=me.interface or ""
    )
    return reply(out)


async def post_preview_skip(request: web.Request) -> web.Response:
    """Preview: skip the contact offered to me, with a reason from the campaign's list."""
    me = _me(request)
    data = await body(request)
    name = str(data.get("campaign") or "")
    desk = _preview_desk(request, me, name)
    loop = desk.loop
    contact_id, reason = _contact_id(data), str(data.get("reason") or "")
    now = loop.now()

    def run() -> dict[str, Any]:
        with loop.store.session() as s:
            row = s.get(Campaign, loop.run_named(name).id)
            assert row is not None
            skip = skip_offered(s, row, contact_id, me.username, reason, now)
            contact = s.get(Contact, contact_id)
            assert contact is not None
            return {
                "skipped": skip.id,
                "reason": reason,
                "then": spec_of(row).skips[reason].then,
                "counted": skip.counted,
                "contact_status": contact.status,
                "next_attempt_at": contact.next_attempt_at,
            }

    return reply(await asyncio.to_thread(run))


async def post_manual(request: web.Request) -> web.Response:
    """A number the agent types, dialled under the rules of any dial (409 names the rule)."""
    me = _me(request)
    data = await body(request)
    name, number = str(data.get("campaign") or ""), data.get("number")
    if not me.may_see_campaign(name):
        return error(403, f"campaign {name!r} is not one of yours")
    if not isinstance(number, str) or not number.strip():
        return error(400, 'give {"campaign": ..., "number": ...}')
    desk = _desk_for(request, me.interface or "")
    out = await manual_dial(
        desk.loop, name, number, agent=me.interface or "", actor=request[PRINCIPAL].actor(None)
    )
    return reply(out)


async def force(request: web.Request) -> web.Response:
    """A supervisor pauses or logs out an agent (of their campaigns' queues)."""
    principal = request[PRINCIPAL]
    data = await body(request)
    key = str(data.get("interface") or data.get("agent") or "")
    found = [
        (d, a)
        for d in _desks(request)
        for a in d.loop.pool.agents.values()
        if key in (a.interface, a.name)
    ]
    if not found:
        return error(404, f"no agent {key!r} on this floor")
    desk, agent = found[0]
    iface = agent.interface
    if principal.user is not None and principal.role is not Role.ADMIN:
        theirs = set(desk.queues_of(principal.user.campaigns).values())
        if principal.user.campaigns and not agent.queues & theirs:
            return error(403, "that agent works no queue of yours")
    action = data.get("action")
    if action == "pause":
        reason = str(data.get("reason") or "supervisor")
        await desk.pause(iface, reason[:40])
    elif action == "logout":
        await desk.leave(iface, sorted(agent.queues))
    else:
        return error(400, 'action is "pause" or "logout"')
    await _audit(request, AuditAction.AGENT_FORCED, interface=iface, did=action)
    return reply({"interface": iface, "action": action})


DESK_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/desk", page),
    ("GET", "/api/desk", get_desk),
    ("GET", "/api/desk/events", desk_events),
    ("POST", "/api/desk/queues", post_queues),
    ("POST", "/api/desk/state", post_state),
    ("POST", "/api/desk/disposition", post_disposition),
    ("POST", "/api/desk/next", post_next),
    ("POST", "/api/desk/preview/dial", post_preview_dial),
    ("POST", "/api/desk/preview/skip", post_preview_skip),
    ("POST", "/api/desk/manual", post_manual),
    ("POST", "/api/agents/force", force),
)

__all__ = ["DESK_ROUTES", "HUB", "PopHub", "pop_view"]
