"""One stdout line per HTTP request: method, path, status, latency, tokens.

Written as plain ASGI middleware (not ``BaseHTTPMiddleware``) so that streamed
responses are timed until their last byte. Route handlers report generated
tokens by setting ``request.state.tokens``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class AccessLog:
    def __init__(self, app: ASGIApp, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self.stream = stream
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        started, status = self.clock(), 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            millis = (self.clock() - started) * 1000
            out = self.stream or sys.stdout  # looked up late: stdout may be swapped
            out.write(f"{scope['method']} {scope['path']} {status} {millis:.1f}ms "
                      f"tokens={state.get('tokens', 0)}\n")
            out.flush()
