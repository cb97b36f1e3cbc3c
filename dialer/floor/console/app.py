"""The supervisor console: an aiohttp app that serves the live page, the JSON API, the
event stream and ``/metrics``, all from a ``Floor``.

Routes (everything under ``/api/`` needs the token; ``/``, ``/static/``, ``/metrics`` and
``/healthz`` do not):

    GET   /                                   the live page (static, no CDN)
    GET   /healthz                            AMI, FastAGI, store up/down; 503 when one is down
                                              (with a credential: campaigns, alarms, reasons)
    GET   /metrics                            Prometheus text format
    GET   /api/alarms                         the alarms that hold now
    POST  /api/login, /api/logout             token -> session cookie; clear it
    GET   /api/session                        200 when authenticated
    GET   /api/snapshot                       campaigns + agents + calls + history at once
    GET   /api/campaigns[/{name}]             campaign snapshots with derived figures
    GET   /api/agents, /api/calls, /api/history
    GET   /api/events                         server-sent events: a snapshot every second
                                              (``history`` only when it has a new point)
    POST  /api/campaigns/{name}/pause|resume
    PATCH /api/campaigns/{name}/pacing        JSON object of pacing keys; 400 with the reason
    POST  /api/campaigns/{name}/preview-next  {"agent": "..."}
    POST  /api/reload                         re-apply changed campaign/settings files
    GET   /api/reloads                        recent reloads (refusals with their reason)
    GET   /api/campaigns/{name}/report        the end-of-run report (when a store is given)
    GET   /api/handle-times                   average handle time per agent, campaign, queue
    POST  /api/v1/alerts, GET /api/v1/alerts[/{id}]   alerts from the bank's systems (``alerts``)
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import SecretStr

from dialer.errors import AccessDenied, ConfigError, DialerError
from dialer.floor.console import alerts as alerts_api
from dialer.floor.console import snapshots as snap
from dialer.floor.console.access import (
    PRINCIPAL,
    USERS,
    UserAccess,
    authorize,
    narrowed,
    principal_of,
    scoped,
)
from dialer.floor.console.auth import COOKIE_NAME, ThrottleLimits, TokenAuth, actor_name
from dialer.floor.console.desktop import DESK_ROUTES, HUB, PopHub
from dialer.floor.console.guard import CONSOLE_LIMITS, GUARD, GuardedSite, guard_middleware
from dialer.floor.console.handletimes import BOARD, HandleBoard, get_handle_times
from dialer.floor.console.keys import CLOSING, FLOOR, STORE
from dialer.floor.console.metrics import DialerMetrics, register_floor
from dialer.floor.console.reload import FileWatcher, ReloadLog, SighupReloader, reload_and_record
from dialer.floor.console.replies import MAX_BODY
from dialer.floor.console.replies import body as _body
from dialer.floor.console.replies import error as _error
from dialer.floor.console.replies import reply as _json
from dialer.floor.console.users_api import USER_ROUTES, audit_logout, sign_in_user
from dialer.floor.desk import DeskFloor
from dialer.floor.view import Floor
from dialer.lists.users import Passwords
from dialer.netguard import ConnectionGuard, GuardLimits, install_log_limits, raise_nofile_limit
from dialer.privacy import scrub, scrub_json

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
PUBLIC_PATHS = frozenset({"/", "/healthz", "/metrics", "/api/login", "/favicon.ico"})

AUTH = web.AppKey("auth", TokenAuth)
REGISTRY = web.AppKey("registry", CollectorRegistry)
METRICS = web.AppKey("metrics", DialerMetrics)
RELOADS = web.AppKey("reloads", ReloadLog)
CACHE = web.AppKey("cache", snap.SnapshotCache)
PUSH_INTERVAL = web.AppKey("push_interval", float)
AUTH_VIA = web.RequestKey("auth_via", str)

_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _too_many(retry_after: float) -> web.Response:
    resp = _error(429, "too many failed sign-ins from this address: try again later")
    resp.headers["Retry-After"] = str(max(1, round(retry_after + 0.49)))
    return resp


def _address(request: web.Request) -> str:
    return request.remote or "?"


def _authenticated(request: web.Request) -> str | None:
    """How the request proved itself: ``"bearer"``, ``"session"``, ``"system:<name>"`` (an
    alert system's own credential, on the alert routes only), or None."""
    auth = request.app[AUTH]
    if auth.check_authorization(request.headers.get("Authorization")):
        return "bearer"
    alerts = request.app.get(alerts_api.API)
    if alerts is not None and request.path.startswith(alerts_api.PATH):
        system = alerts.system_for(request.headers.get("Authorization"))
        if system is not None:
            return f"system:{system}"
    cookie = request.cookies.get(COOKIE_NAME)
    if cookie and auth.check_session(cookie):
        return "session"
    return None


@web.middleware
async def security_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path.startswith("/api/") and path not in PUBLIC_PATHS:
        throttle = request.app[AUTH].throttle
        address = _address(request)
        presented = "Authorization" in request.headers or COOKIE_NAME in request.cookies
        if presented:  # a credential is a guess until it checks out
            wait = throttle.begin(address)
            if wait:
                return _too_many(wait)
        via = _authenticated(request)
        if presented:
            (throttle.succeeded if via else throttle.failed)(address)
        if via is None:
            denied = _error(401, "unauthorized: send the API token")
            denied.headers["WWW-Authenticate"] = 'Bearer realm="dialer"'
            return denied
        if via == "session" and request.method not in ("GET", "HEAD", "OPTIONS"):
            # the cookie is SameSite=Strict already; refuse a foreign Origin as well
            origin = request.headers.get("Origin")
            if origin and origin.split("://", 1)[-1] != request.host:
                return _error(403, "cross-origin request refused")
        request[AUTH_VIA] = via
        principal = await authorize(request, via)
        if isinstance(principal, str):
            status, _, why = principal.partition(": ")
            return _error(int(status), why)
    try:
        resp = await handler(request)
    except web.HTTPException:
        raise
    except AccessDenied as exc:
        return _error(403, str(exc))
    except ConfigError as exc:
        return _error(400, str(exc))
    except DialerError as exc:
        return _error(409, str(exc))
    if not path.startswith("/api/"):
        for k, v in _PAGE_HEADERS.items():
            resp.headers.setdefault(k, v)
    return resp


def _actor(request: web.Request) -> str:
    principal = request.get(PRINCIPAL)
    if principal is not None:
        return principal.actor(request.headers.get("X-Actor"))
    return actor_name(request.headers.get("X-Actor"), request.get(AUTH_VIA, "api"))


def _campaign_or_404(request: web.Request) -> dict[str, Any]:
    name = request.match_info["name"]
    for c in snap.campaigns(request.app[FLOOR]):
        if c["name"] == name:
            return c
    raise web.HTTPNotFound(
        text=json.dumps({"error": f"no campaign named {name!r}"}), content_type="application/json"
    )


# --- public ---------------------------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def healthz(request: web.Request) -> web.Response:
    """Each dependency (AMI per switch, FastAGI, the store) up or down, HTTP 503 while one is
    down (what a load balancer or monitor acts on). The detail - why a dependency is down,
    each campaign's state, the alarms - only for the API token or a signed-in user (a
    supervisor of some campaigns sees those): an anonymous caller learns no campaign name."""
    health = request.app[FLOOR].health()
    doc = health.to_json()
    status = 200 if health.ok else 503
    via = _authenticated(request)
    principal = await principal_of(request, via) if via is not None else None
    if principal is None or isinstance(principal, str):
        public = {name: {"up": d["up"]} for name, d in doc["dependencies"].items()}
        return _json({"ok": doc["ok"], "at": doc["at"], "dependencies": public}, status=status)
    if narrowed(principal) is not None:
        doc = scoped(principal, {"health": doc})["health"]
    return _json(doc, status=status)


async def alarms(request: web.Request) -> web.Response:
    health = request.app[FLOOR].health().to_json()
    return _json(_scoped(request, {"health": health})["health"]["alarms"])


async def metrics_page(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def login(request: web.Request) -> web.Response:
    auth = request.app[AUTH]
    address = _address(request)
    wait = auth.throttle.begin(address)
    if wait:
        return _too_many(wait)
    try:
        data = await _body(request)
    except web.HTTPException:
        auth.throttle.failed(address)
        raise
    user = None
    if "username" in data:  # a person: name and password (dialer users add)
        signed = await sign_in_user(request, data, address)
        if isinstance(signed, web.Response):
            auth.throttle.failed(address)
            return signed
        user = signed
    else:
        token = data.get("token")
        if not isinstance(token, str) or not auth.check_token(token):
            auth.throttle.failed(address)
            return _error(401, "wrong token")
    auth.throttle.succeeded(address)
    resp = _json({"ok": True, "user": user.to_json() if user is not None else None})
    resp.set_cookie(
        COOKIE_NAME,
        auth.sessions.create(user),  # a random id the server keeps: sign-out revokes it
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
        max_age=12 * 3600,
    )
    return resp


async def logout(request: web.Request) -> web.Response:
    sid = request.cookies.get(COOKIE_NAME)
    if sid:
        held = request.app[AUTH].sessions.get(sid)
        if held is not None and held.user is not None:
            await audit_logout(request, held.user.username)
        request.app[AUTH].sessions.revoke(sid)
    resp = _json({"ok": True})
    resp.del_cookie(COOKIE_NAME, path="/")
    return resp


# --- reads ----------------------------------------------------------------------------------


async def session(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    user = principal.user
    return _json(
        {
            "authenticated": True,
            "via": principal.via,
            "role": principal.role.value,
            "user": user.to_json() if user is not None else None,
        }
    )


def _queues(app: web.Application) -> dict[str, str] | None:
    """Campaign -> its agent queue on this floor (None: the floor has no desks to ask)."""
    floor = app[FLOOR]
    if not isinstance(floor, DeskFloor):
        return None
    out: dict[str, str] = {}
    for desk in floor.desks():
        out.update(desk.queues_of(()))
    return out


def _scoped(request: web.Request, doc: dict[str, Any]) -> dict[str, Any]:
    principal = request[PRINCIPAL]
    if narrowed(principal) is None:
        return doc
    return scoped(principal, doc, _queues(request.app))


async def get_snapshot(request: web.Request) -> web.Response:
    return _json(_scoped(request, request.app[CACHE].get()))


async def get_campaigns(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    return _json(
        [c for c in snap.campaigns(request.app[FLOOR]) if principal.may_see_campaign(c["name"])]
    )


async def get_campaign(request: web.Request) -> web.Response:
    return _json(_campaign_or_404(request))


async def get_agents(request: web.Request) -> web.Response:
    return _json(_scoped(request, {"agents": snap.agents(request.app[FLOOR])})["agents"])


async def get_calls(request: web.Request) -> web.Response:
    return _json(_scoped(request, {"calls": snap.calls(request.app[FLOOR])})["calls"])


async def get_workers(request: web.Request) -> web.Response:
    return _json(snap.workers(request.app[FLOOR]))


async def get_history(request: web.Request) -> web.Response:
    return _json(snap.history(request.app[FLOOR]))


async def get_reloads(request: web.Request) -> web.Response:
    return _json([snap.to_json(e) for e in request.app[RELOADS].recent(50)])


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``event: snapshot`` with the floor every push interval - for a
    supervisor of some campaigns, only theirs (as ``/api/snapshot``)."""
    app = request.app
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    closing = app[CLOSING]
    try:
        await resp.write(b"retry: 2000\n\n")
        sent_history = None
        cache = app[CACHE]
        while not closing.is_set():
            key = cache.history_key()
            payload = cache.encoded(
                with_history=key != sent_history, scope=lambda doc: _scoped(request, doc)
            )
            sent_history = key
            await resp.write(b"event: snapshot\ndata: " + payload + b"\n\n")
            try:
                await asyncio.wait_for(closing.wait(), app[PUSH_INTERVAL])
            except TimeoutError:
                pass
    except ConnectionResetError:  # the page went away
        pass
    return resp


async def report(request: web.Request) -> web.Response:
    from dialer.lists.report import build_report, parse_bound

    store = request.app.get(STORE)
    if store is None:
        return _error(404, "reports need the store (not given to this console)")
    name = request.match_info["name"]
    tz = request.query.get("tz", "Asia/Shanghai")
    since = parse_bound(request.query.get("from"), tz)
    until = parse_bound(request.query.get("to"), tz)

    def run() -> dict[str, Any]:
        with store.session() as s:  # type: ignore[attr-defined]
            return build_report(s, name, since=since, until=until, tz=tz)

    # a long report must not stall pacing, which shares this event loop
    return _json(await asyncio.to_thread(run))


async def get_messages(request: web.Request) -> web.Response:
    """SMS and e-mail by state, and the free-text replies waiting for an agent."""
    from dialer.messaging.outbox import console_view

    store = request.app.get(STORE)
    if store is None:
        return _error(404, "messages need the store (not given to this console)")

    def run() -> dict[str, Any]:
        with store.session() as s:  # type: ignore[attr-defined]
            return console_view(s)

    return _json(await asyncio.to_thread(run))


async def reply_handled(request: web.Request) -> web.Response:
    """An agent has read (and dealt with) a free-text reply."""
    import datetime as dt

    from dialer.messaging.outbox import mark_handled

    store = request.app.get(STORE)
    if store is None:
        return _error(404, "replies need the store (not given to this console)")
    try:
        rid = int(request.match_info["id"])
    except ValueError:
        return _error(400, "a reply id is a number")
    actor = _actor(request)

    def run() -> int:
        with store.session() as s:  # type: ignore[attr-defined]
            return mark_handled(s, [rid], actor, dt.datetime.now(dt.UTC))

    if not await asyncio.to_thread(run):
        return _error(404, f"no unhandled reply {rid}")
    return _json({"handled": rid, "by": actor})


# --- actions --------------------------------------------------------------------------------


async def post_alert(request: web.Request) -> web.Response:
    return await alerts_api.post_alert(request, await _body(request), request.get(AUTH_VIA, ""))


async def pause(request: web.Request) -> web.Response:
    _campaign_or_404(request)
    name = request.match_info["name"]
    await request.app[FLOOR].pause(name, actor=_actor(request))
    log.info("campaign %s paused by %s", name, _actor(request))
    request.app[CACHE].invalidate()
    return _json(_campaign_or_404(request))


async def resume(request: web.Request) -> web.Response:
    _campaign_or_404(request)
    name = request.match_info["name"]
    await request.app[FLOOR].resume(name, actor=_actor(request))
    log.info("campaign %s resumed by %s", name, _actor(request))
    request.app[CACHE].invalidate()
    return _json(_campaign_or_404(request))


async def set_pacing(request: web.Request) -> web.Response:
    _campaign_or_404(request)
    name = request.match_info["name"]
    changes = await _body(request)
    if not changes:
        return _error(400, "no pacing changes given")
    mets = request.app[METRICS]
    try:
        pacing = await request.app[FLOOR].set_pacing(name, changes, actor=_actor(request))
    except ConfigError as exc:
        mets.count_pacing_change(name, accepted=False)
        log.warning(
            "pacing change for %s by %s refused: %s", name, _actor(request), scrub(str(exc))
        )
        return _error(400, str(exc))
    mets.count_pacing_change(name, accepted=True)
    log.info(
        "pacing of %s changed by %s: %s",
        name,
        _actor(request),
        scrub(json.dumps(changes, default=str)),
    )
    request.app[CACHE].invalidate()
    return _json({"campaign": name, "pacing": snap.to_json(pacing)})


async def preview_next(request: web.Request) -> web.Response:
    _campaign_or_404(request)
    name = request.match_info["name"]
    data = await _body(request)
    agent = data.get("agent")
    if not isinstance(agent, str) or not agent:
        return _error(400, 'give the agent: {"agent": "Local/1001@agents"}')
    contact = await request.app[FLOOR].preview_next(name, agent, actor=_actor(request))
    log.info("preview: next contact of %s for %s (%s)", name, agent, "one" if contact else "none")
    request.app[CACHE].invalidate()
    return _json({"campaign": name, "agent": agent, "contact": scrub_json(snap.to_json(contact))})


async def reload(request: web.Request) -> web.Response:
    event = await reload_and_record(
        request.app[FLOOR],
        None,
        actor=_actor(request),
        reload_log=request.app[RELOADS],
        metrics=request.app[METRICS],
    )
    request.app[CACHE].invalidate()
    return _json(snap.to_json(event), status=200 if event.ok else 400)


# --- the app --------------------------------------------------------------------------------


#: The console's routes (the static files are added beside them).
ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/", index),
    ("GET", "/healthz", healthz),
    ("GET", "/api/alarms", alarms),
    ("GET", "/metrics", metrics_page),
    ("POST", "/api/login", login),
    ("POST", "/api/logout", logout),
    ("GET", "/api/session", session),
    ("GET", "/api/snapshot", get_snapshot),
    ("GET", "/api/campaigns", get_campaigns),
    ("GET", "/api/campaigns/{name}", get_campaign),
    ("GET", "/api/campaigns/{name}/report", report),
    ("POST", "/api/campaigns/{name}/pause", pause),
    ("POST", "/api/campaigns/{name}/resume", resume),
    ("PATCH", "/api/campaigns/{name}/pacing", set_pacing),
    ("POST", "/api/campaigns/{name}/preview-next", preview_next),
    ("GET", "/api/agents", get_agents),
    ("GET", "/api/calls", get_calls),
    ("GET", "/api/history", get_history),
    ("GET", "/api/workers", get_workers),
    ("GET", "/api/events", events),
    ("POST", "/api/reload", reload),
    ("GET", "/api/reloads", get_reloads),
    ("GET", "/api/messages", get_messages),
    ("POST", "/api/replies/{id}/handled", reply_handled),
    ("GET", "/api/handle-times", get_handle_times),
    *USER_ROUTES,
    ("POST", alerts_api.PATH, post_alert),
    ("GET", alerts_api.PATH, alerts_api.list_alerts),
    ("GET", alerts_api.PATH + "/{id}", alerts_api.get_alert),
    *DESK_ROUTES,
)


def _reloaders(
    floor: Floor, watch: Sequence[Path], interval_s: float, sighup: bool
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The hot-reload file watcher and the SIGHUP reloader, for the app's lifetime."""

    async def reloaders(app: web.Application) -> AsyncIterator[None]:
        watcher = None
        hup = None
        if watch:
            watcher = FileWatcher(
                floor,
                list(watch),
                reload_log=app[RELOADS],
                metrics=app[METRICS],
                interval_s=interval_s,
            )
            watcher.start()
        if sighup:
            hup = SighupReloader(floor, reload_log=app[RELOADS], metrics=app[METRICS])
            hup.install()
        yield
        if watcher is not None:
            await watcher.stop()
        if hup is not None:
            await hup.uninstall()

    return reloaders


def make_app(
    floor: Floor,
    *,
    token: str | SecretStr,
    registry: CollectorRegistry,
    metrics: DialerMetrics | None = None,
    reload_log: ReloadLog | None = None,
    watch: Sequence[Path] = (),
    watch_interval_s: float = 1.0,
    sighup: bool = False,
    push_interval_s: float = 1.0,
    store: Any = None,
    throttle: ThrottleLimits | None = None,
    guard_limits: GuardLimits = CONSOLE_LIMITS,
    passwords: Passwords | None = None,
    alerts: alerts_api.AlertApi | None = None,
) -> web.Application:
    """The console as an aiohttp app.

    ``registry`` gets the floor's gauges (read at scrape time) and, unless ``metrics`` is
    given (already registered on it), the event metrics too. ``watch`` lists campaign and
    settings files or folders to poll for hot reload; ``sighup`` reloads on ``SIGHUP``.
    """
    secret = token.get_secret_value() if isinstance(token, SecretStr) else token
    auth = TokenAuth(secret, throttle=throttle)  # refuses a weak token (ConfigError)
    app = web.Application(
        middlewares=[guard_middleware, security_middleware], client_max_size=MAX_BODY
    )
    app[FLOOR] = floor
    app[AUTH] = auth
    app[GUARD] = ConnectionGuard(guard_limits)
    app[REGISTRY] = registry
    app[METRICS] = metrics if metrics is not None else DialerMetrics(registry)
    app[RELOADS] = reload_log if reload_log is not None else ReloadLog()
    reloads = app[RELOADS]
    app[CLOSING] = asyncio.Event()
    board = None
    if store is not None:
        board = HandleBoard(store, floor.now, every_s=max(1.0, 5 * push_interval_s))
        app[BOARD] = board
        app.cleanup_ctx.append(board.lifetime(app[CLOSING]))

    def extra() -> dict[str, Any]:
        out: dict[str, Any] = {"reloads": [snap.to_json(e) for e in reloads.recent()]}
        if board is not None:
            out.update(board.extra())
        return out

    app[CACHE] = snap.SnapshotCache(floor, max_age_s=min(0.5, push_interval_s / 2), extra=extra)
    app[PUSH_INTERVAL] = push_interval_s
    if store is not None:
        app[STORE] = store  # users sign in only where the store is
        app[USERS] = UserAccess(store, passwords or Passwords(), auth.sessions)
        app[HUB] = hub = PopHub(store)
        if isinstance(floor, DeskFloor):
            hub.attach(floor.desks())
    if alerts is not None:
        app[alerts_api.API] = alerts
    register_floor(registry, floor)

    async def on_shutdown(app: web.Application) -> None:
        app[CLOSING].set()  # ends every event stream
        if HUB in app:
            await app[HUB].close()

    app.on_shutdown.append(on_shutdown)

    app.cleanup_ctx.append(_reloaders(floor, watch, watch_interval_s, sighup))

    r = app.router
    add = {
        "GET": r.add_get,
        "POST": r.add_post,
        "PATCH": r.add_patch,
        "DELETE": r.add_delete,
    }  # GET answers HEAD too
    for method, path, handler in ROUTES:
        add[method](path, handler)
    r.add_static("/static/", STATIC_DIR, append_version=False)
    return app


async def start_console(
    floor: Floor,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    token: str | SecretStr | None = None,
    registry: CollectorRegistry | None = None,
    metrics: DialerMetrics | None = None,
    watch: Sequence[Path] = (),
    sighup: bool = False,
    store: Any = None,
    push_interval_s: float = 1.0,
    throttle: ThrottleLimits | None = None,
    guard_limits: GuardLimits = CONSOLE_LIMITS,
    passwords: Passwords | None = None,
    alerts: alerts_api.AlertApi | None = None,
) -> tuple[web.AppRunner, int]:
    """Serve the console on ``host:port`` (0 picks a free port) inside the running loop.

    Returns the runner (``await runner.cleanup()`` stops it) and the bound port. The token
    defaults to ``DIALER_API_TOKEN`` (``SecretMissing`` if unset; ``ConfigError`` if weak).
    Connections go through the guard (``guard_limits``); failed sign-ins are throttled per
    address (``throttle``).
    """
    if token is None:
        from dialer.settings import get_secret

        token = get_secret("api_token")
        assert token is not None
    if registry is None:
        registry = metrics.registry if metrics is not None else CollectorRegistry()
    app = make_app(
        floor,
        token=token,
        registry=registry,
        metrics=metrics,
        watch=watch,
        sighup=sighup,
        store=store,
        push_interval_s=push_interval_s,
        throttle=throttle,
        guard_limits=guard_limits,
        passwords=passwords,
        alerts=alerts,
    )
    raise_nofile_limit()  # the guard, not the descriptor limit, decides who is served
    install_log_limits()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = GuardedSite(runner, host, port, app[GUARD])
    await site.start()
    bound = runner.addresses[0][1]
    if host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("console listens on %s: plain HTTP, put it behind TLS", host)
    log.info("console on http://%s:%d/", host, bound)
    return runner, int(bound)
