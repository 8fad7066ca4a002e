"""The HTTP API on 127.0.0.1, documented by OpenAPI at /docs and /openapi.json.

Every route but /healthz needs `Authorization: Bearer <token>`; the token
lives in $SUBSTRATUS_HOME/token with mode 0600.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any, Optional

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from substratus import __version__
from substratus.api.errors import error_body, status_for
from substratus.controlplane.service import ControlPlane
from substratus.controlplane.store import Record
from substratus.errors import SubstratusError, ValidationError
from substratus.resources.kinds import canonical_kind
from substratus.resources.manifest import parse_object


class ApplyRequest(BaseModel):
    objects: list[dict[str, Any]]


class ApplyResult(BaseModel):
    kind: str
    namespace: str
    name: str
    result: str


class ObjectList(BaseModel):
    items: list[dict[str, Any]]


def create_app(cp: ControlPlane, token: str) -> FastAPI:
    app = FastAPI(title="Substratus control plane", version=__version__,
                  description="Apply Dataset, Model, ModelServer and Notebook objects; read their status and logs.")

    def authorised(authorization: Optional[str] = Header(default=None)) -> None:
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise SubstratusError("missing or wrong API token", hint="the CLI reads it from $SUBSTRATUS_HOME/token")

    @app.exception_handler(SubstratusError)
    async def _handle(_: Request, err: SubstratusError) -> JSONResponse:
        code = 401 if err.message == "missing or wrong API token" else status_for(err)
        return JSONResponse(error_body(err), status_code=code)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__, "engine": cp.runtime.engine}

    @app.post("/api/v1/apply", response_model=list[ApplyResult], dependencies=[Depends(authorised)])
    def apply(req: ApplyRequest) -> list[dict[str, str]]:
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
    def logs(kind: str, namespace: str, name: str, follow: bool = False) -> StreamingResponse:
        lines = cp.logs(canonical_kind(kind), namespace, name, follow)
        first = next(lines, None)  # surface NotFoundError as a 404 before streaming starts

        def body() -> Iterator[bytes]:
            if first is not None:
                yield (first + "\n").encode()
            for line in lines:
                yield (line + "\n").encode()

        return StreamingResponse(body(), media_type="text/plain")

    return app
