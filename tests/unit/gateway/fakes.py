"""Tiny one-behaviour stand-ins: a Backends, an OpenAI-shaped model server, a live uvicorn thread.

`FakeModelServer` answers the routes the reference server (`images/ml`)
answers, in the same shapes, and can be told to misbehave one way at a time:
stream slowly, die after N events (torn mid-event or not), take long to answer,
answer too much. It records what it saw, including a client that went away
(it watches `receive` the way the real server does).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, Optional

import uvicorn

from substratus.gateway.backends import Load, ModelInfo, ModelState, Replica
from substratus.gateway.errors import NotReadyInTime, UnknownModel

Scope = dict[str, Any]


class FakeBackends:
    """Models by id; `ready` are served now, `asleep` appear when woken (after `start_delay`)."""

    def __init__(self, ready: Optional[dict[str, list[Replica]]] = None,
                 asleep: Optional[dict[str, list[Replica]]] = None, *, start_delay: float = 0.0) -> None:
        self.ready = dict(ready or {})
        self.asleep = dict(asleep or {})
        self.start_delay = start_delay
        self.wakes: list[str] = []
        self.reports: list[tuple[str, Load]] = []

    async def models(self) -> Sequence[ModelInfo]:
        infos = [ModelInfo(m, ModelState.RUNNING if self.ready.get(m) else ModelState.STOPPED, created=1)
                 for m in sorted({*self.ready, *self.asleep})]
        return infos

    def replicas(self, model: str) -> Sequence[Replica]:
        if model not in self.ready and model not in self.asleep:
            raise UnknownModel(model)
        return self.ready.get(model, [])

    async def wake(self, model: str, *, wait: float) -> Sequence[Replica]:
        self.wakes.append(model)
        if self.start_delay > wait:
            await asyncio.sleep(wait)
            raise NotReadyInTime(model, wait)
        await asyncio.sleep(self.start_delay)
        self.ready[model] = self.asleep.pop(model)
        return self.ready[model]

    def report(self, model: str, load: Load) -> None:
        self.reports.append((model, load))

    def last(self, model: str) -> Load:
        return [load for m, load in self.reports if m == model][-1]


def _completion(model: str, text: str, *, chat: bool, chunk: bool) -> dict[str, Any]:
    if chat:
        choice: dict[str, Any] = ({"index": 0, "delta": {"content": text}, "finish_reason": None} if chunk else
                                  {"index": 0, "message": {"role": "assistant", "content": text},
                                   "finish_reason": "stop"})
        kind = "chat.completion.chunk" if chunk else "chat.completion"
    else:
        choice = {"index": 0, "text": text, "finish_reason": None if chunk else "length", "logprobs": None}
        kind = "text_completion"
    body: dict[str, Any] = {"id": "cmpl-fake", "object": kind, "created": 1, "model": model, "choices": [choice]}
    if not chunk:
        body["usage"] = {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
    return body


class FakeModelServer:
    def __init__(self, name: str, *, events: int = 3, event_delay: float = 0.0, answer_delay: float = 0.0,
                 die_after: Optional[int] = None, tear: bool = False, answer_bytes: int = 0,
                 token: Optional[str] = None, status: int = 200) -> None:
        self.name, self.events, self.event_delay, self.answer_delay = name, events, event_delay, answer_delay
        self.die_after, self.tear, self.answer_bytes, self.token = die_after, tear, answer_bytes, token
        self.status = status  # not 200: answer every request with this status and an error body
        self.hits: list[str] = []
        self.auth: list[str] = []
        self.disconnects = 0
        self.disconnected = threading.Event()
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        self.hits.append(scope["path"])
        self.auth.append(headers.get(b"authorization", b"").decode())
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.in_flight += 1
        try:
            await self._answer(scope["path"], json.loads(body or b"{}"), receive, send)
        finally:
            self.in_flight -= 1

    async def _answer(self, path: str, req: dict[str, Any], receive: Any, send: Any) -> None:
        if self.token and not any(a == f"Bearer {self.token}" for a in self.auth[-1:]):
            await _send_json(send, 401, {"detail": "bearer token required"})
            return
        if self.status != 200:
            await _send_json(send, self.status, {"error": {"message": "queue full", "code": self.status}},
                             [(b"retry-after", b"3")])
            return
        work = self._stream(path, req, send) if req.get("stream") else self._whole(path, req, send)
        task = asyncio.ensure_future(work)
        watch = asyncio.ensure_future(_until_disconnect(receive))
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
        if watch.done() and not task.done():
            task.cancel()
            self.disconnects += 1
            self.disconnected.set()
        watch.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]  # let uvicorn drop the connection (a dying server)

    async def _whole(self, path: str, req: dict[str, Any], send: Any) -> None:
        await asyncio.sleep(self.answer_delay)
        if path == "/generate":
            await _send_json(send, 200, {"generation": f"{req.get('prompt', '')} from {self.name}"})
            return
        text = f"from {self.name}" + "x" * self.answer_bytes
        await _send_json(send, 200, _completion(req.get("model", self.name), text,
                                                chat=path.endswith("chat/completions"), chunk=False))

    async def _stream(self, path: str, req: dict[str, Any], send: Any) -> None:
        await asyncio.sleep(self.answer_delay)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]})
        chat = path.endswith("chat/completions")
        for i in range(self.events):
            if self.die_after is not None and i == self.die_after:
                if self.tear:
                    await send({"type": "http.response.body", "body": b'data: {"choi', "more_body": True})
                    await asyncio.sleep(0.05)
                raise ConnectionResetError(f"{self.name} dies after {i} events")
            event = _completion(req.get("model", self.name), f" t{i}", chat=chat, chunk=True)
            await send({"type": "http.response.body", "body": f"data: {json.dumps(event)}\n\n".encode(),
                        "more_body": True})
            await asyncio.sleep(self.event_delay)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def _until_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_json(send: Any, status: int, body: Any, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": data})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """An ASGI app under uvicorn on 127.0.0.1 in a thread of its own (its own event loop)."""

    def __init__(self, app: Any, *, port: Optional[int] = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="critical",
                                                    access_log=False))
        self.app = app
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"test server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def replica(self, rid: Optional[str] = None, token: Optional[str] = None) -> Replica:
        return Replica(rid or f"replica-{self.port}", self.url, token)
