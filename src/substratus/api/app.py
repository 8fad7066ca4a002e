"""The HTTP API, documented by OpenAPI at /docs and /openapi.json.

Served on the Unix socket `$SUBSTRATUS_HOME/api.sock` (the CLI) and on
127.0.0.1 (dashboards, other clients). Every route but /healthz needs
`Authorization: Bearer <token>`; the token lives in $SUBSTRATUS_HOME/token
with mode 0600 and is at least MIN_TOKEN_LENGTH characters. Request bodies
are bounded (`limits.BodyLimit`); log followers hold no worker thread.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, Optional

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from substratus import __version__
from substratus.api.errors import error_body, status_for
from substratus.api.limits import BodyLimit, FollowResponse
from substratus.controlplane.service import ControlPlane
from substratus.controlplane.store import Record
from substratus.errors import SubstratusError, ValidationError
from substratus.resources.kinds import canonical_kind
from substratus.resources.manifest import parse_object


MIN_TOKEN_LENGTH = 32
MAX_OBJECTS = 1000
UNAUTHORISED = "missing or wrong API token"


class ApplyRequest(BaseModel):
    objects: list[dict[str, Any]] = Field(max_length=MAX_OBJECTS)


class ApplyResult(BaseModel):
    kind: str
    namespace: str
    name: str
    result: str
    generation: int = Field(description="the object's generation after this apply")


class ObjectList(BaseModel):
    items: list[dict[str, Any]]


def check_bearer(authorization: Optional[str], token: str) -> bool:
    """Exactly `Bearer <token>`; an empty or absent header never matches (nor does an empty token)."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or len(given) < MIN_TOKEN_LENGTH or len(token) < MIN_TOKEN_LENGTH:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def create_app(cp: ControlPlane, token: str) -> FastAPI:
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"the API token must be at least {MIN_TOKEN_LENGTH} characters")
    app = FastAPI(title="Substratus control plane", version=__version__,
                  description="Apply Dataset, Model, ModelServer and Notebook objects; read their status and logs.")
    app.add_middleware(BodyLimit)

    def authorised(authorization: Optional[str] = Header(default=None)) -> None:
        if not check_bearer(authorization, token):
            raise SubstratusError(UNAUTHORISED, hint="send `Authorization: Bearer <token>`; the CLI reads the "
                                                     "token from $SUBSTRATUS_HOME/token")

    @app.exception_handler(SubstratusError)
    async def _handle(_: Request, err: SubstratusError) -> JSONResponse:
        code = 401 if err.message == UNAUTHORISED else status_for(err)
        return JSONResponse(error_body(err), status_code=code)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__, "engine": cp.runtime.engine}

    @app.post("/api/v1/apply", response_model=list[ApplyResult], dependencies=[Depends(authorised)])
    def apply(req: ApplyRequest) -> list[dict[str, Any]]:
        objects, problems = [], []
        for i, doc in enumerate(req.objects):
            try:
                objects.append(parse_object(doc, source=f"objects[{i}]"))
            except ValidationError as err:
                problems += [(f"objects[{i}]: {p}" if p else f"objects[{i}]", m) for p, m in err.problems]
        if problems:
            raise ValidationError(problems, hint="nothing was applied")
        return cp.apply(objects)

    @app.get("/api/v1/objects", response_model=ObjectList, dependencies=[Depends(authorised)])
    def list_objects(kind: Optional[str] = None, namespace: Optional[str] = None) -> dict[str, Any]:
        k = canonical_kind(kind) if kind else None
        return {"items": [r.document() for r in cp.records(k, namespace)]}

    @app.get("/api/v1/objects/{kind}/{namespace}/{name}", dependencies=[Depends(authorised)])
    def get_object(kind: str, namespace: str, name: str) -> dict[str, Any]:
        return cp.get(canonical_kind(kind), namespace, name).document()

    @app.get("/api/v1/objects/{kind}/{namespace}/{name}/describe", dependencies=[Depends(authorised)])
    def describe_object(kind: str, namespace: str, name: str) -> dict[str, Any]:
        rec: Record = cp.get(canonical_kind(kind), namespace, name)
        containers = [{"name": c.name, "status": c.status, "image": c.image, "exitCode": c.exit_code,
                       "ports": {str(k): v for k, v in c.ports.items()}}
                      for c in cp.containers(rec.kind, rec.namespace, rec.name)]
        source = rec.memo.get("source") or {}
        return {**rec.document(), "generation": rec.generation, "source": source.get("description"),
                "containers": containers, "logFiles": [str(p) for p in cp.log_files(rec)]}

    @app.delete("/api/v1/objects/{kind}/{namespace}/{name}", dependencies=[Depends(authorised)])
    def delete_object(kind: str, namespace: str, name: str) -> dict[str, Any]:
        return cp.delete(canonical_kind(kind), namespace, name)

    @app.get("/api/v1/objects/{kind}/{namespace}/{name}/logs", dependencies=[Depends(authorised)],
             response_class=StreamingResponse)
    async def logs(kind: str, namespace: str, name: str, follow: bool = False) -> StreamingResponse:
        rec = cp.get(canonical_kind(kind), namespace, name)  # a 404 before streaming starts

        async def body() -> AsyncGenerator[bytes, None]:
            async with aclosing(cp.stream_logs(rec, follow)) as lines:
                async for line in lines:
                    yield (line + "\n").encode()

        return FollowResponse(body(), media_type="text/plain")

    return app
