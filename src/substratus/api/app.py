"""The HTTP API, documented by OpenAPI at /docs and /openapi.json.

Served on the Unix socket `$SUBSTRATUS_HOME/api.sock` (the CLI) and on
127.0.0.1 (dashboards, other clients). Every route but /healthz needs
`Authorization: Bearer <token>`; the token lives in $SUBSTRATUS_HOME/token
with mode 0600 and is at least MIN_TOKEN_LENGTH characters. Request bodies
are bounded (`limits.BodyLimit`); log followers hold no worker thread.
Lists and watches are written as raw JSON (no per-item response
validation), lists from documents encoded once per version (`api.encoded`):
`sub get` of 1,000 objects must stay quick.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, Optional

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from substratus import __version__
from substratus.api import MIN_TOKEN_LENGTH
from substratus.api.dashboard import mount_dashboard
from substratus.api.docs import add_docs
from substratus.api.encoded import EncodedDocuments, encode
from substratus.api.errors import error_body, status_for
from substratus.api.limits import BodyLimit, FollowResponse
from substratus.api.watch import Gone, Hub
from substratus.errors import SubstratusError, Unauthorized, ValidationError
from substratus.local.service import MAX_OBJECTS, TOO_MANY_HINT, ControlPlane
from substratus.local.store import Record
from substratus.resources.kinds import canonical_kind
from substratus.resources.objectkey import ObjectKey
from substratus.resources.selectors import Selector
from substratus.resources.selectors import parse as parse_selector

SELECTOR_DOC = ("Only objects whose metadata.labels match, as kubectl writes it: `app=web`, `tier!=db`, "
                "`env in (a,b)`, `env notin (a)`, `gpu`, `!legacy`; requirements separated by ','.")


UNAUTHORISED = "missing or wrong API token"


def request_problems(errors: Any) -> ValidationError:
    problems, hint = [], ""
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
        problems.append((".".join(loc) or "request", str(e.get("msg", "invalid"))))
        if e.get("type") == "too_long" and loc[:1] == ["objects"]:
            hint = TOO_MANY_HINT
    return ValidationError(problems, hint=hint)


class ApplyRequest(BaseModel):
    objects: list[dict[str, Any]] = Field(max_length=MAX_OBJECTS,
                                          description="Manifests (apiVersion, kind, metadata, spec), as YAML decodes them")


class ApplyResult(BaseModel):
    kind: str
    namespace: str
    name: str
    result: str
    generation: int = Field(description="the object's generation after this apply")


class ObjectRef(BaseModel):
    kind: str
    namespace: str = "default"
    name: str


class DeleteRequest(BaseModel):
    objects: list[ObjectRef] = Field(default_factory=list, description="Objects to delete; with `labelSelector`, "
                                                                       "also every object it selects")


class ObjectList(BaseModel):
    items: list[dict[str, Any]]
    resourceVersion: str = ""


def json_response(data: Any, status: int = 200) -> Response:
    return Response(encode(data), status_code=status, media_type="application/json")


def check_bearer(authorization: Optional[str], token: str) -> bool:
    """Exactly `Bearer <token>`; an empty or absent header never matches (nor does an empty token)."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or len(given) < MIN_TOKEN_LENGTH or len(token) < MIN_TOKEN_LENGTH:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def create_app(cp: ControlPlane, token: str) -> FastAPI:
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"the API token must be at least {MIN_TOKEN_LENGTH} characters")
    app = FastAPI(title="Substratus control plane", version=__version__, docs_url=None, redoc_url=None,
                  description="Apply Dataset, Model, ModelServer and Notebook objects; read, watch and delete "
                              "them; read their logs.")
    add_docs(app, "Substratus control plane")  # Swagger UI from this package, never from a CDN
    app.add_middleware(BodyLimit)
    hub = Hub(cp.store)
    documents = EncodedDocuments()
    cp.store.subscribe(documents.forget)

    def authorised(authorization: Optional[str] = Header(default=None)) -> None:
        if not check_bearer(authorization, token):
            raise Unauthorized(UNAUTHORISED, hint="send `Authorization: Bearer <token>`; the CLI reads the "
                                                     "token from $SUBSTRATUS_HOME/token")

    @app.exception_handler(SubstratusError)
    async def _handle(_: Request, err: SubstratusError) -> JSONResponse:
        return JSONResponse(error_body(err), status_code=status_for(err))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        """A request FastAPI refuses before our code runs answers in the same error shape, with
        the field named (`sub` shows it as it shows a bad manifest)."""
        return JSONResponse(error_body(request_problems(err.errors())), status_code=422)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__, "engine": cp.runtime.engine}

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(authorised)])
    def metrics() -> str:
        counts: dict[tuple[str, str], int] = {}
        for r in cp.store.records():
            key = (r.kind, "true" if r.status.get("ready") else "false")
            counts[key] = counts.get(key, 0) + 1
        q = cp.controller.queue
        return cp.controller.metrics.render(counts, q.depth(), q.scheduled())

    @app.post("/api/v1/apply", response_model=list[ApplyResult], dependencies=[Depends(authorised)])
    def apply(req: ApplyRequest, dry_run: bool = Query(False, alias="dryRun")) -> Response:
        return json_response(cp.apply_documents(req.objects, dry_run=dry_run))

    def selected(kind: Optional[str], namespace: Optional[str], selector: Selector) -> list[Record]:
        records = cp.records(kind, namespace)
        return records if selector.empty else [r for r in records if selector.matches(r.labels)]

    @app.get("/api/v1/objects", response_model=ObjectList, dependencies=[Depends(authorised)])
    def list_objects(kind: Optional[str] = None, namespace: Optional[str] = None,
                     label_selector: str = Query("", alias="labelSelector", description=SELECTOR_DOC)) -> Response:
        k = canonical_kind(kind) if kind else None
        selector = parse_selector(label_selector)
        version = cp.store.resource_version
        items = documents.array(selected(k, namespace, selector))
        return Response(f'{{"items":{items},"resourceVersion":{encode(str(version))}}}',
                        media_type="application/json")

    @app.get("/api/v1/watch", dependencies=[Depends(authorised)], response_class=StreamingResponse,
             responses={200: {"content": {"application/x-ndjson": {}},
                              "description": "One JSON event a line: ADDED/MODIFIED/DELETED with the object, "
                                             "BOOKMARK with a resourceVersion, ERROR (410: list again)."}})
    async def watch(request: Request, kind: Optional[str] = None, namespace: Optional[str] = None,
                    resource_version: Optional[int] = Query(None, alias="resourceVersion", ge=0),
                    timeout_seconds: Optional[int] = Query(None, alias="timeoutSeconds", ge=1, le=86400),
                    label_selector: str = Query("", alias="labelSelector", description=SELECTOR_DOC)) -> Response:
        k = canonical_kind(kind) if kind else None
        selector = parse_selector(label_selector)
        if resource_version is not None and resource_version < cp.store.resource_version:
            try:
                hub.check(resource_version)
            except Gone as err:
                return JSONResponse({"error": {"type": "Gone", "message": str(err), "hint": "list, then watch from "
                                               "the list's resourceVersion"}}, status_code=410)

        def keep(rec: Record) -> bool:
            return (k is None or rec.kind == k) and (namespace is None or rec.namespace == namespace) \
                and selector.matches(rec.labels)

        async def lines() -> AsyncIterator[bytes]:
            deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
            heartbeat = 15.0 if deadline is None else min(15.0, max(0.5, timeout_seconds or 0) / 4)
            async for item in hub.watch(keep, resource_version, heartbeat=heartbeat):
                if await request.is_disconnected() or (deadline is not None and time.monotonic() > deadline):
                    return
                yield (json.dumps(item, separators=(",", ":")) + "\n").encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.get("/api/v1/objects/{kind}/{namespace}/{name}", dependencies=[Depends(authorised)])
    def get_object(kind: str, namespace: str, name: str) -> Response:
        return json_response(cp.get(canonical_kind(kind), namespace, name).document())

    @app.get("/api/v1/objects/{kind}/{namespace}/{name}/describe", dependencies=[Depends(authorised)])
    def describe_object(kind: str, namespace: str, name: str) -> Response:
        rec: Record = cp.get(canonical_kind(kind), namespace, name)
        containers = [{"name": c.name, "status": c.status, "image": c.image, "exitCode": c.exit_code,
                       "ports": {str(k): v for k, v in c.ports.items()}}
                      for c in cp.containers(rec.kind, rec.namespace, rec.name)]
        source = (rec.status.get("source") or {}).get("description")
        return json_response({**rec.document(), "generation": rec.generation, "source": source,
                              "containers": containers, "logFiles": [str(p) for p in cp.log_files(rec)],
                              **cp.secrets(rec)})

    @app.delete("/api/v1/objects/{kind}/{namespace}/{name}", dependencies=[Depends(authorised)])
    def delete_object(kind: str, namespace: str, name: str) -> Response:
        [result] = cp.delete([ObjectKey(canonical_kind(kind), namespace, name)])
        return json_response(result)

    @app.post("/api/v1/delete", dependencies=[Depends(authorised)])
    def delete_objects(req: DeleteRequest, kind: Optional[str] = None, namespace: Optional[str] = None,
                       label_selector: Optional[str] = Query(None, alias="labelSelector", description=SELECTOR_DOC)
                       ) -> Response:
        keys = [ObjectKey(canonical_kind(o.kind), o.namespace, o.name) for o in req.objects]
        if label_selector is not None:
            selector = parse_selector(label_selector)
            if selector.empty:
                raise ValidationError([("labelSelector", "an empty selector would delete every object")],
                                      hint="name at least one label, e.g. labelSelector=app=demo")
            k = canonical_kind(kind) if kind else None
            keys += [r.key for r in selected(k, namespace, selector) if r.key not in keys]
        return json_response({"items": cp.delete(keys)})

    @app.get("/api/v1/objects/{kind}/{namespace}/{name}/logs", dependencies=[Depends(authorised)],
             response_class=StreamingResponse)
    async def logs(kind: str, namespace: str, name: str, follow: bool = False) -> StreamingResponse:
        rec = cp.get(canonical_kind(kind), namespace, name)  # a 404 before streaming starts

        async def body() -> AsyncGenerator[bytes, None]:
            async with aclosing(cp.stream_logs(rec, follow)) as lines:
                async for line in lines:
                    yield (line + "\n").encode()

        return FollowResponse(body(), media_type="text/plain")

    mount_dashboard(app, cp, hub, token)
    return app
