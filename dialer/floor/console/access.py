"""Who is asking, and may they: the console's principals and its table of roles per route.

A request proves itself with the API token (a bearer header - machine clients - or a session
made from it: the console's operator, with every right) or with a user's session (made by
``POST /api/login {"username", "password"}``): that user's role (``dialer.lists.users.Role``)
then decides, route by route, from ``ROUTE_ROLES``; a route missing from the table needs an
admin. A supervisor limited to some campaigns gets 403 on another campaign's routes. A user
session is confirmed against the store every ``RECHECK_S``: a user disabled (by the CLI or an
admin) loses every session at their next request. Every action is audited under the real
user (``user:<name>``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from dialer.floor.console.auth import COOKIE_NAME, SessionStore, actor_name
from dialer.floor.console.snapshots import count_by
from dialer.lists.handling import handle_times, rows_of
from dialer.lists.users import Passwords, Role, SignIn, UserView, authenticate, get_user

RECHECK_S = 5.0

#: The least role each route needs (method, route pattern). Missing: admin.
ROUTE_ROLES: dict[tuple[str, str], Role] = {
    ("GET", "/api/session"): Role.AGENT,
    ("POST", "/api/logout"): Role.AGENT,
    ("GET", "/api/snapshot"): Role.SUPERVISOR,
    ("GET", "/api/campaigns"): Role.SUPERVISOR,
    ("GET", "/api/campaigns/{name}"): Role.SUPERVISOR,
    ("GET", "/api/campaigns/{name}/report"): Role.SUPERVISOR,
    ("POST", "/api/campaigns/{name}/pause"): Role.SUPERVISOR,
    ("POST", "/api/campaigns/{name}/resume"): Role.SUPERVISOR,
    ("PATCH", "/api/campaigns/{name}/pacing"): Role.SUPERVISOR,
    ("POST", "/api/campaigns/{name}/preview-next"): Role.SUPERVISOR,
    ("GET", "/api/agents"): Role.SUPERVISOR,
    ("GET", "/api/calls"): Role.SUPERVISOR,
    ("GET", "/api/history"): Role.SUPERVISOR,
    ("GET", "/api/workers"): Role.SUPERVISOR,
    ("GET", "/api/events"): Role.SUPERVISOR,
    ("GET", "/api/reloads"): Role.SUPERVISOR,
    ("GET", "/api/alarms"): Role.SUPERVISOR,
    ("GET", "/api/messages"): Role.SUPERVISOR,
    ("POST", "/api/replies/{id}/handled"): Role.SUPERVISOR,
    ("GET", "/api/audit"): Role.SUPERVISOR,
    ("GET", "/api/handle-times"): Role.SUPERVISOR,
    ("POST", "/api/agents/force"): Role.SUPERVISOR,
    # the agent's desktop: their own phone, calls and customers only
    ("GET", "/api/desk"): Role.AGENT,
    ("GET", "/api/desk/events"): Role.AGENT,
    ("POST", "/api/desk/queues"): Role.AGENT,
    ("POST", "/api/desk/state"): Role.AGENT,
    ("POST", "/api/desk/disposition"): Role.AGENT,
    ("POST", "/api/desk/next"): Role.AGENT,
    ("POST", "/api/desk/preview/dial"): Role.AGENT,
    ("POST", "/api/desk/preview/skip"): Role.AGENT,
    ("POST", "/api/desk/manual"): Role.AGENT,
    # alerts from the bank's systems: supervisors follow them (posting is for the machines)
    ("GET", "/api/v1/alerts"): Role.SUPERVISOR,
    ("GET", "/api/v1/alerts/{id}"): Role.SUPERVISOR,
    # POST /api/reload and /api/users*: admins (not listed)
}


@dataclass(frozen=True)
class Principal:
    """Who a request is: the token's holder (``user`` None) or a signed-in user."""

    via: str  # bearer | session | user
    user: UserView | None = None

    @property
    def role(self) -> Role:
        return self.user.role if self.user is not None else Role.ADMIN

    def actor(self, claimed: str | None) -> str:
        """The audit trail's name: ``user:<name>``, or the token's ``console:<claimed>``."""
        if self.user is not None:
            return f"user:{self.user.username}"
        return actor_name(claimed, self.via)

    def may_see_campaign(self, campaign: str) -> bool:
        return self.user is None or self.user.may_see_campaign(campaign)


PRINCIPAL = web.RequestKey("principal", Principal)


@dataclass
class UserAccess:
    """The console's side of users: the store they live in and the password hasher."""

    store: Any
    passwords: Passwords
    sessions: SessionStore

    async def sign_in(self, username: str, password: str, address: str) -> SignIn:
        def run() -> SignIn:
            with self.store.session() as s:
                return authenticate(
                    s,
                    username,
                    password,
                    now=dt.datetime.now(dt.UTC),
                    passwords=self.passwords,
                    address=address,
                )

        return await asyncio.to_thread(run)  # Argon2 takes tens of milliseconds

    async def confirm(self, request: web.Request) -> UserView | None:
        """The session's user if still allowed (re-read from the store every ``RECHECK_S``);
        None ends the session."""
        sid = request.cookies.get(COOKIE_NAME, "")
        session = self.sessions.get(sid)
        if session is None or session.user is None:
            return None
        now = self.sessions.clock()
        if now - session.checked < RECHECK_S:
            return session.user
        name = session.user.username

        def run() -> UserView | None:
            with self.store.session() as s:
                try:
                    return get_user(s, name)
                except Exception:  # the row is gone
                    return None

        user = await asyncio.to_thread(run)
        if user is None or user.disabled:
            self.sessions.revoke(sid)
            return None
        session.user, session.checked = user, now
        return user


USERS = web.AppKey("users", UserAccess)


def narrowed(principal: Principal) -> UserView | None:
    """The user when they see only some campaigns (a supervisor of some), else None."""
    user = principal.user
    if user is None or user.role is Role.ADMIN or not user.campaigns:
        return None
    return user


def scoped(
    principal: Principal, snapshot: dict[str, Any], queues: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A snapshot with only the campaigns (their calls, handle times and - when ``queues``
    maps campaigns to their agent queues - the agents working their queues) a supervisor of
    some campaigns may see; everyone else gets it whole."""
    user = narrowed(principal)
    if user is None:
        return snapshot
    out = dict(snapshot)
    if isinstance(out.get("campaigns"), list):
        out["campaigns"] = [c for c in out["campaigns"] if user.may_see_campaign(c["name"])]
    calls = out.get("calls")
    if isinstance(calls, dict) and isinstance(calls.get("calls"), list):
        kept = [k for k in calls["calls"] if user.may_see_campaign(k.get("campaign", ""))]
        out["calls"] = {**calls, "calls": kept, "by_state": count_by(kept, "state")}
    agents = out.get("agents")
    if queues is not None and isinstance(agents, dict) and isinstance(agents.get("agents"), list):
        mine = {q for c, q in queues.items() if user.may_see_campaign(c)}
        kept = [a for a in agents["agents"] if mine & set(a.get("queues") or ())]
        out["agents"] = {**agents, "agents": kept, "by_state": count_by(kept, "state")}
    health = out.get("health")
    if isinstance(health, dict) and isinstance(health.get("campaigns"), dict):
        others = {c for c in health["campaigns"] if not user.may_see_campaign(c)}
        out["health"] = {
            **health,
            "campaigns": {c: s for c, s in health["campaigns"].items() if c not in others},
            "alarms": [a for a in health.get("alarms", []) if a.get("subject") not in others],
        }
    handled = out.get("handle_times")
    if isinstance(handled, dict):
        rows = [r for r in rows_of(handled) if user.may_see_campaign(r.campaign)]
        out["handle_times"] = {**handle_times(rows), "since": handled.get("since")}
    return out


def _route_key(request: web.Request) -> tuple[str, str]:
    resource = request.match_info.route.resource
    pattern = resource.canonical if resource is not None else request.path
    method = "GET" if request.method == "HEAD" else request.method
    return method, pattern


def required_role(request: web.Request) -> Role:
    return ROUTE_ROLES.get(_route_key(request), Role.ADMIN)


async def principal_of(request: web.Request, via: str) -> Principal | str:
    """Who the request is (``via``: how it proved itself), or why its session no longer
    counts (``"401: ..."``); no role is checked here."""
    user = None
    if via == "session":
        access = request.app.get(USERS)
        held = access.sessions.get(request.cookies.get(COOKIE_NAME, "")) if access else None
        if access is not None and held is not None and held.user is not None:
            user = await access.confirm(request)
            if user is None:
                return "401: this account is disabled or gone: sign in again"
            via = "user"
    return Principal(via, user)


async def authorize(request: web.Request, via: str) -> Principal | str:
    """The request's principal, or why it is refused (``"401: ..."``/``"403: ..."``)."""
    principal = await principal_of(request, via)
    if isinstance(principal, str):
        return principal
    need = required_role(request)
    if not principal.role.at_least(need):
        return f"403: this needs the {need.value} role (you are {principal.role.value})"
    name = request.match_info.get("name")
    if name is not None and not principal.may_see_campaign(name):
        return f"403: campaign {name!r} is not one of yours"
    request[PRINCIPAL] = principal
    return principal


__all__ = [
    "PRINCIPAL",
    "ROUTE_ROLES",
    "RECHECK_S",
    "USERS",
    "Principal",
    "UserAccess",
    "authorize",
    "narrowed",
    "principal_of",
    "required_role",
    "scoped",
]
