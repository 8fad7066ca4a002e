"""Bounds on what one HTTP request may bring, and a stream that ends when its client leaves.

`BodyLimit` answers 413 to a request body over `max_bytes` (declared or
streamed), before the app buffers it. `FollowResponse` always races the
stream against the client's disconnect, whatever ASGI spec version the
server announces, so a `sub logs -f` whose client went away stops at once
(and with it the engine's `logs` process) instead of at the next line.
"""

from __future__ import annotations

import json

import anyio
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from substratus.api import MAX_BODY_BYTES


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, f"Content-Length is {int(declared)}")
            return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, "the body grew over the limit")

    async def _refuse(self, send: Send, why: str) -> None:
        body = json.dumps({"error": {"type": "ValidationError", "message": f"request body too large: {why}",
                                     "hint": f"send at most {self.max_bytes} bytes; split the manifests "
                                             "over several `sub apply` calls",
                                     "problems": [{"field": "body", "message": f"at most {self.max_bytes} bytes"}]}})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body.encode()})


class FollowResponse(StreamingResponse):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:

            async def stream() -> None:
                try:
                    await self.stream_response(send)
                except OSError:
                    pass  # the client went away mid-write: nothing more to send
                tg.cancel_scope.cancel()

            async def watch() -> None:
                await self.listen_for_disconnect(receive)
                tg.cancel_scope.cancel()

            tg.start_soon(stream)
            tg.start_soon(watch)

