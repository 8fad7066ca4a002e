"""The gateway's thin ASGI layer: read a body within a cap, reply, notice a client leaving.

A plain ASGI app, no framework: the gateway has six routes, takes bytes in and
passes bytes on, and must cancel its upstream call the moment its client goes
(uvicorn's `send` is silent after a disconnect, so only `receive` tells).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from substratus.gateway.errors import GatewayError, RequestTooLarge, error_body, error_headers, status_for

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
JSON = b"application/json"


class ClientGone(Exception):
    """The client disconnected before its request was read."""


def header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return b""


async def read_body(scope: Scope, receive: Receive, cap: int) -> bytes:
    declared = header(scope, b"content-length")
    if declared.isdigit() and int(declared) > cap:
        raise RequestTooLarge(f"request body too large: Content-Length is {int(declared)}",
                              hint=f"send at most {cap} bytes")
    parts: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise RequestTooLarge("request body too large: it grew over the limit", hint=f"send at most {cap} bytes")
        parts.append(chunk)
        more = message.get("more_body", False)
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def until_disconnect(receive: Receive, work: Awaitable[None]) -> bool:
    """Run `work`, cancelled if the client disconnects first; True when it ran to its end.

    Call only once the body is read: from then on `receive` only says "disconnect".
    """
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()  # the client left, or we are being cancelled: the upstream call stops too
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        return False
    task.result()  # re-raise what the work raised
    return True


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class Reply:
    """One response: JSON answers, errors before it started, or a stream of bytes."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def start(self, status: int, headers: Headers) -> None:
        self.started = True
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def chunk(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes = b"") -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def whole(self, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ((b"content-type", JSON),)) -> None:
        await self.start(status, [*headers, (b"content-length", str(len(body)).encode())])
        await self.end(body)

    async def json(self, status: int, value: Any) -> None:
        await self.whole(status, json.dumps(value).encode())

    async def error(self, err: GatewayError) -> None:
        """The OpenAI-shaped error, unless the response has begun (then the stream said it)."""
        if not self.started:
            await self.whole(status_for(err)[0], json.dumps(error_body(err)).encode(), error_headers(err))
