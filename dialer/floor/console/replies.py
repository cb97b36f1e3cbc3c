"""The console's JSON replies and request bodies: one place for the shapes every route uses.

Replies are UTF-8 JSON, never cached; an error is ``{"error": <one line>}`` with digits that
could identify a customer scrubbed. A body must be one JSON object, at most ``MAX_BODY`` bytes
and ``MAX_JSON_DEPTH`` levels deep (refused before the parser sees it).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from dialer.privacy import scrub

MAX_BODY = 64 * 1024
#: deepest JSON nesting a request body may have (the API's objects are flat)
MAX_JSON_DEPTH = 20


def reply(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, ensure_ascii=False, default=str),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def error(status: int, message: str) -> web.Response:
    return reply({"error": scrub(message)}, status=status)


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def json_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text (brackets inside strings ignored),
    found without recursion: a body too deep to parse is refused before the parser sees it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


async def body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        text = await request.text()
    except web.HTTPRequestEntityTooLarge:
        raise bad_request(f"body larger than {MAX_BODY} bytes") from None
    except UnicodeDecodeError:
        raise bad_request("body is not valid JSON") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise bad_request(f"body nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise bad_request("body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "body must be a JSON object"}),
            content_type="application/json",
        )
    return data
