"""ASGI middleware in front of every route: the request-body bound and the bearer token.

Written as plain ASGI (like :mod:`substratus_ml.accesslog`) so that it sees a
body before FastAPI reads it: a declared ``Content-Length`` over the bound is
refused at once, and a chunked body is counted as it arrives and refused when
it passes the bound (413 either way). With a token configured
(``SUBSTRATUS_SERVER_TOKEN``) every path except the open ones (API docs,
health probes, metrics) needs ``Authorization: Bearer <token>`` (401
otherwise, compared in constant time).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = frozenset({"/docs", "/openapi.json", "/healthz", "/readyz", "/metrics"})
OPEN_PREFIXES = ("/docs-assets/",)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the bound.

    An ``HTTPException``, because FastAPI turns any other exception raised while it
    reads a body into a 400; this one it lets through to its handler (413).
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_detail(limit))


def _too_large_detail(limit: int) -> str:
    return f"request body over {limit} bytes (SUBSTRATUS_MAX_BODY_BYTES)"


async def _send_json(send: Send, status: int, body: dict[str, str],
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


class Guard:
    def __init__(self, app: ASGIApp, max_body_bytes: int, token: str | None,
                 on_reject: Callable[[str], None] = lambda reason: None) -> None:
        self.app, self.max_body, self.on_reject = app, max_body_bytes, on_reject
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.token is not None and not self._authorized(scope):
            self.on_reject("unauthorized")
            await _send_json(send, 401, {"detail": "missing or wrong bearer token: send the header "
                                                   "'Authorization: Bearer <SUBSTRATUS_SERVER_TOKEN>'"},
                             [(b"www-authenticate", b'Bearer realm="substratus"')])
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            self.on_reject("body_too_large")
            await self._too_large(send)
            return
        try:
            await self.app(scope, self._counting(receive), send)
        except BodyTooLarge:  # raised outside FastAPI's body reading
            await self._too_large(send)

    def _authorized(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return True
        given = _header(scope, b"authorization") or b""
        scheme, _, credential = given.partition(b" ")
        assert self.token is not None
        return scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self.token)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    self.on_reject("body_too_large")
                    raise BodyTooLarge(self.max_body)
            return message

        return counted

    async def _too_large(self, send: Send) -> None:
        await _send_json(send, 413, {"detail": _too_large_detail(self.max_body)})
