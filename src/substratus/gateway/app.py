"""The gateway: one OpenAI endpoint in front of every model server.

`Gateway(backends, keys=KeyStore(dir))` is an ASGI app; serve it with uvicorn
on a port of its own (or mount it). Routes:

    GET  /healthz                   200, no key needed (liveness)
    GET  /v1/models                 every model, running or not (OpenAI list + `state`, `parent`)
    GET  /v1/models/{model}         one of them
    POST /v1/completions            routed by the body's `model`, streamed when `stream` is true
    POST /v1/chat/completions       the same
    POST /models/{model}/generate   the contract's /generate (its body has no model: the path names it)

`{model}` follows `names.py` and may hold a `/` (`team-a/tiny-gpt`). Bodies
are passed on byte for byte; the client's key never reaches a model server
(a replica's own token does, if it has one).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Optional

from substratus.gateway.asgi import ClientGone, Receive, Reply, Scope, Send, header, read_body, until_disconnect
from substratus.gateway.backends import Backends, ModelInfo
from substratus.gateway.errors import (BadRequest, GatewayError, MethodNotAllowed, RouteNotFound, Unauthorized,
                                       UnknownModel)
from substratus.gateway.keys import KeyStore
from substratus.gateway.names import BadModelName, canonical
from substratus.gateway.pool import Clock, ReplicaPool
from substratus.gateway.settings import GatewaySettings
from substratus.gateway.upstream import Upstream

log = logging.getLogger("substratus.gateway")

Handler = Callable[[Scope, Receive, Reply, str], Awaitable[None]]
OPENAI_PATHS = ("/v1/completions", "/v1/chat/completions")
MODELS_PATH = "/v1/models"
GENERATE_PREFIX, GENERATE_SUFFIX = "/models/", "/generate"


class Gateway:
    """The ASGI app. `keys=None` serves without API keys (only for a loopback-only gateway)."""

    def __init__(self, backends: Backends, *, keys: Optional[KeyStore], settings: GatewaySettings = GatewaySettings(),
                 clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self.backends, self.keys, self.settings = backends, keys, settings
        self.pool = ReplicaPool(backends, settings, clock=clock, wall=wall)
        self.upstream = Upstream(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def aclose(self) -> None:
        """Close the upstream connections (lifespan shutdown does it when uvicorn serves the app)."""
        await self.upstream.close()

    # -- dispatch --------------------------------------------------------
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        reply = Reply(send)
        try:
            handler, arg = self._route(scope["method"], _path(scope))
            if handler != self._health:  # liveness needs no key
                self._authenticate(scope)
            await handler(scope, receive, reply, arg)
        except UnknownModel as exc:
            await reply.error(exc if exc.known else UnknownModel(exc.model, await self._known(), hint=exc.hint))
        except GatewayError as exc:
            await reply.error(exc)
        except ClientGone:
            pass
        except Exception as exc:  # a bug: keep the OpenAI shape for the client, the traceback for the log
            log.exception("gateway: %s %s failed", scope["method"], scope["path"])
            await reply.error(GatewayError(f"internal gateway error: {type(exc).__name__}",
                                           hint="the gateway's log has the traceback"))

    def _route(self, method: str, path: str) -> tuple[Handler, str]:
        if path in OPENAI_PATHS:
            return self._post_only(method, self._openai), path
        if path == MODELS_PATH or path.startswith(MODELS_PATH + "/"):
            return self._get_only(method, self._models), path[len(MODELS_PATH) + 1:]
        if path.startswith(GENERATE_PREFIX) and path.endswith(GENERATE_SUFFIX):
            return self._post_only(method, self._generate), path[len(GENERATE_PREFIX):-len(GENERATE_SUFFIX)]
        if path == "/healthz":
            return self._health, ""
        raise RouteNotFound(f"no route for {path}", hint="the gateway serves /v1/models, /v1/completions, "
                            "/v1/chat/completions and /models/{model}/generate")

    @staticmethod
    def _post_only(method: str, handler: Handler) -> Handler:
        if method != "POST":
            raise MethodNotAllowed(f"{method} is not allowed here; use POST")
        return handler

    @staticmethod
    def _get_only(method: str, handler: Handler) -> Handler:
        if method != "GET":
            raise MethodNotAllowed(f"{method} is not allowed here; use GET")
        return handler

    def _authenticate(self, scope: Scope) -> None:
        if self.keys is None:
            return
        scheme, _, key = header(scope, b"authorization").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("No API key provided: send `Authorization: Bearer KEY`",
                               hint="create one with `sub keys create NAME`")
        if self.keys.verify(key.strip()) is None:
            raise Unauthorized(f"Incorrect API key provided: {_redacted(key.strip())}",
                               hint="`sub keys list` shows the keys that exist")

    # -- handlers --------------------------------------------------------
    async def _health(self, scope: Scope, receive: Receive, reply: Reply, _: str) -> None:
        await reply.json(200, {"ok": True})

    async def _models(self, scope: Scope, receive: Receive, reply: Reply, name: str) -> None:
        models = await self.backends.models()
        if not name:
            await reply.json(200, {"object": "list", "data": [_card(m) for m in models]})
            return
        wanted = _canonical(name)
        for info in models:
            if info.id == wanted:
                await reply.json(200, _card(info))
                return
        raise UnknownModel(name, [m.id for m in models])

    async def _openai(self, scope: Scope, receive: Receive, reply: Reply, path: str) -> None:
        body = await read_body(scope, receive, self.settings.max_request_bytes)
        model, stream = _model_and_stream(body)
        if stream:
            work = self.pool.route(model, lambda r: self.upstream.forward_stream(r, path, body, reply))
            await until_disconnect(receive, work)
        else:
            await until_disconnect(receive, self._whole(model, path, body, reply))

    async def _generate(self, scope: Scope, receive: Receive, reply: Reply, name: str) -> None:
        model = _canonical(name)
        body = await read_body(scope, receive, self.settings.max_request_bytes)
        await until_disconnect(receive, self._whole(model, "/generate", body, reply))

    async def _whole(self, model: str, path: str, body: bytes, reply: Reply) -> None:
        answer = await self.pool.route(model, lambda r: self.upstream.fetch(r, path, body))
        await reply.whole(answer.status, answer.body, answer.headers)

    async def _known(self) -> list[str]:
        return sorted(m.id for m in await self.backends.models())

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path  # mounted under a prefix


def _canonical(name: str) -> str:
    try:
        return canonical(name)
    except BadModelName:
        raise UnknownModel(name) from None


def _model_and_stream(body: bytes) -> tuple[str, bool]:
    try:
        data: Any = json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, str) or not model:
        raise BadRequest("the body has no `model`: name the model to use", param="model",
                         hint="GET /v1/models lists the names")
    return _canonical(model), data.get("stream") is True


def _card(info: ModelInfo) -> dict[str, Any]:
    return {"id": info.id, "object": "model", "created": info.created, "owned_by": info.owned_by,
            "state": info.state.value, "parent": info.base}


def _redacted(key: str) -> str:
    return f"{key[:7]}...{key[-2:]}" if len(key) > 12 else "***"
