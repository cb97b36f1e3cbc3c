"""The console's user routes: signing in as a person, managing users (admins), the audit trail.

GET  /users                                the users page (admins; served to anyone, its
                                           calls need an admin's session)
POST /api/login {"username", "password"}   a user's session (the token login stays)
GET  /api/users                            admins: every user (never a hash)
POST /api/users                            admins: {"username", "role", "password",
                                           "interface"?, "campaigns"?, "display_name"?,
                                           "language"?}
POST /api/users/{username}/disable|enable  admins; disabling ends the user's sessions
PATCH /api/users/{username}                admins: {"role"?, "interface"?, "campaigns"?,
                                           "display_name"?, "language"?}; a new role or phone
                                           ends the user's sessions
POST /api/users/{username}/password        admins: {"password"}; ends the user's sessions
GET  /api/audit?limit=&campaign=&format=csv  supervisors: the audit trail, newest first
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select

from dialer.audit import AuditAction
from dialer.errors import ConfigError
from dialer.floor.console.access import PRINCIPAL, USERS, UserAccess
from dialer.floor.console.replies import body, error, reply
from dialer.lists.users import (
    Role,
    UserView,
    add_user,
    get_user,
    list_users,
    set_disabled,
    set_password,
    update_user,
)
from dialer.privacy import scrub_json
from dialer.store.models import AuditEntry, Campaign

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AUDIT_MAX = 5000


def _access(request: web.Request) -> UserAccess:
    access = request.app.get(USERS)
    if access is None:
        raise web.HTTPNotFound(
            text='{"error": "users need the store (not given to this console)"}',
            content_type="application/json",
        )
    return access


def _actor(request: web.Request) -> str:
    return request[PRINCIPAL].actor(request.headers.get("X-Actor"))


async def sign_in_user(
    request: web.Request, data: dict[str, Any], address: str
) -> UserView | web.Response:
    """The user, or the 401 to answer (the address throttle is the caller's)."""
    access = request.app.get(USERS)
    if access is None:
        return error(404, "users need the store (not given to this console)")
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        return error(400, 'give {"username": ..., "password": ...}')
    signed = await access.sign_in(username.strip().lower()[:40], password[:1024], address)
    if signed.user is None:
        return error(401, signed.refused)
    return signed.user


async def audit_logout(request: web.Request, username: str) -> None:
    access = request.app.get(USERS)
    if access is None:
        return

    def run() -> None:
        with access.store.session() as s:
            s.add(AuditEntry(actor=f"user:{username}", action=AuditAction.USER_LOGOUT, detail={}))

    await asyncio.to_thread(run)


STATIC_DIR = Path(__file__).resolve().parent / "static"


async def users_page(request: web.Request) -> web.StreamResponse:
    """The admins' users page (its API calls need an admin's session)."""
    return web.FileResponse(STATIC_DIR / "users.html", headers={"Cache-Control": "no-cache"})


async def get_users(request: web.Request) -> web.Response:
    access = _access(request)

    def run() -> list[dict[str, Any]]:
        with access.store.session() as s:
            return [u.to_json() for u in list_users(s)]

    return reply(await asyncio.to_thread(run))


async def post_user(request: web.Request) -> web.Response:
    access = _access(request)
    data = await body(request)
    try:
        role = Role(str(data.get("role")))
    except ValueError:
        return error(400, f"role is one of {', '.join(r.value for r in Role)}")
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        return error(400, "give a username and a password")
    campaigns = data.get("campaigns") or []
    if not isinstance(campaigns, list) or not all(isinstance(c, str) for c in campaigns):
        return error(400, "campaigns is a list of campaign names")
    actor = _actor(request)

    def run() -> UserView:
        with access.store.session() as s:
            return add_user(
                s,
                username,
                role,
                password,
                actor=actor,
                passwords=access.passwords,
                interface=data.get("interface") or None,
                campaigns=campaigns,
                display_name=data.get("display_name") or None,
                language=str(data.get("language") or "zh"),
            )

    user = await asyncio.to_thread(run)  # ConfigError -> 400 with the reason
    return reply(user.to_json(), status=201)


async def patch_user(request: web.Request) -> web.Response:
    access = _access(request)
    name = request.match_info["username"]
    data = await body(request)
    unknown = set(data) - {"role", "interface", "campaigns", "display_name", "language"}
    if unknown:
        return error(400, f"unknown keys: {', '.join(sorted(unknown))}")
    kw: dict[str, Any] = {}
    if "role" in data:
        try:
            kw["role"] = Role(str(data["role"]))
        except ValueError:
            return error(400, f"role is one of {', '.join(r.value for r in Role)}")
    if "campaigns" in data:
        campaigns = data["campaigns"]
        if not isinstance(campaigns, list) or not all(isinstance(c, str) for c in campaigns):
            return error(400, "campaigns is a list of campaign names")
        kw["campaigns"] = campaigns
    for key in ("interface", "display_name", "language"):
        if key in data:
            value = data[key]
            if value is not None and not isinstance(value, str):
                return error(400, f"{key} is text")
            kw[key] = value.strip() if isinstance(value, str) else None
    actor = _actor(request)

    def run() -> tuple[UserView, UserView]:
        with access.store.session() as s:
            before = get_user(s, name)
            return before, update_user(s, name, actor=actor, **kw)

    before, user = await asyncio.to_thread(run)  # ConfigError -> 400 with the reason
    if (before.role, before.interface) != (user.role, user.interface):
        access.sessions.revoke_user(name)  # signed in again under the new role and phone
    return reply(user.to_json())


def _set_disabled(disabled: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        access = _access(request)
        name = request.match_info["username"]
        actor = _actor(request)

        def run() -> UserView:
            with access.store.session() as s:
                return set_disabled(s, name, disabled, actor=actor)

        user = await asyncio.to_thread(run)
        if disabled:
            access.sessions.revoke_user(name)
        return reply(user.to_json())

    return handler


async def post_password(request: web.Request) -> web.Response:
    access = _access(request)
    name = request.match_info["username"]
    data = await body(request)
    password = data.get("password")
    if not isinstance(password, str):
        return error(400, 'give {"password": ...}')
    actor = _actor(request)

    def run() -> UserView:
        with access.store.session() as s:
            return set_password(s, name, password, actor=actor, passwords=access.passwords)

    user = await asyncio.to_thread(run)
    access.sessions.revoke_user(name)
    return reply(user.to_json())


def audit_rows(
    store: Any, *, limit: int, campaigns: tuple[str, ...] | None
) -> list[dict[str, Any]]:
    """The newest audit rows (of ``campaigns`` only, when given), masked."""
    with store.session() as s:
        q = (
            select(AuditEntry, Campaign.name)
            .outerjoin(Campaign, Campaign.id == AuditEntry.campaign_id)
            .order_by(AuditEntry.id.desc())
            .limit(limit)
        )
        if campaigns is not None:
            q = q.where(Campaign.name.in_(campaigns))
        return [
            {
                "at": e.at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "campaign": name,
                "detail": scrub_json(e.detail or {}),
            }
            for e, name in s.execute(q)
        ]


async def get_audit(request: web.Request) -> web.StreamResponse:
    store = _access(request).store
    try:
        limit = max(1, min(AUDIT_MAX, int(request.query.get("limit", "200"))))
    except ValueError:
        raise ConfigError("limit is a number") from None
    principal = request[PRINCIPAL]
    only = request.query.get("campaign")
    mine = principal.user.campaigns if principal.user and principal.role is not Role.ADMIN else ()
    if only is not None and not principal.may_see_campaign(only):
        return error(403, f"campaign {only!r} is not one of yours")
    scope = (only,) if only else (tuple(mine) if mine else None)
    rows = await asyncio.to_thread(audit_rows, store, limit=limit, campaigns=scope)
    if request.query.get("format") != "csv":
        return reply(rows)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["at", "actor", "action", "campaign", "detail"])
    for r in rows:
        w.writerow([r["at"], r["actor"], r["action"], r["campaign"] or "", r["detail"]])
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="audit-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


USER_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/users", users_page),
    ("GET", "/api/users", get_users),
    ("POST", "/api/users", post_user),
    ("POST", "/api/users/{username}/disable", _set_disabled(True)),
    ("POST", "/api/users/{username}/enable", _set_disabled(False)),
    ("PATCH", "/api/users/{username}", patch_user),
    ("POST", "/api/users/{username}/password", post_password),
    ("GET", "/api/audit", get_audit),
)
