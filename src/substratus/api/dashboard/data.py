"""What a logged-in dashboard reads and does under /ui/api.

- `GET /ui/api/session`: the CSRF token and who we are (engine, version);
- `GET /ui/api/objects` and `/ui/api/objects/{kind}/{ns}/{name}`: objects as
  the browser may see them (`links.redact`), one with its containers and links;
- `GET /ui/api/events`: server-sent events from the watch hub (`events`);
- `.../progress`: the run's progress series (`series`), `.../logs`: a bounded
  log tail (`logtail`), `.../lineage`: the lineage graph (`lineage`);
- `POST .../generate` on a ModelServer: the playground (`playground`), CSRF-checked.

Blocking reads (files, `podman logs`) run in the threadpool (plain `def`
routes), so a slow disk never stalls the event loop that feeds live pages.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from substratus import __version__
from substratus.api.dashboard import Dashboard, events, lineage, logtail, playground, series
from substratus.api.dashboard.links import object_links, redact
from substratus.api.dashboard.web import SECURITY_HEADERS, require_csrf, require_session
from substratus.errors import ValidationError
from substratus.local.store import Record
from substratus.reconcile import state as states
from substratus.resources.kinds import canonical_kind
from substratus.resources.reasons import Reason


def as_json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status_code=status, media_type="application/json",
                    headers=SECURITY_HEADERS)


def server_token(rec: Record) -> Optional[str]:
    state = states.load(rec.kind, rec.state)
    return state.token if isinstance(state, states.ServerState) else None


def reason_table() -> dict[str, dict[str, str]]:
    """Every Reason with its category and sentence, so the page colours them as the CLI judges them."""
    def category(reason: Reason) -> str:
        return "failed" if reason.failed else "done" if reason.settled else "progress"
    return {r.value: {"category": category(r), "description": r.describe()} for r in Reason}


def router(dash: Dashboard) -> APIRouter:
    r = APIRouter(prefix="/ui/api", include_in_schema=False)
    cp = dash.cp

    def record(kind: str, namespace: str, name: str) -> Record:
        return cp.get(canonical_kind(kind), namespace, name)

    @r.get("/session")
    def session(request: Request) -> Response:
        s = require_session(request, dash.sessions)
        return as_json({"csrfToken": s.csrf, "expiresIn": dash.sessions.remaining(s), "version": __version__,
                        "engine": cp.runtime.engine, "reasons": reason_table()})

    @r.get("/objects")
    def list_objects(request: Request) -> Response:
        require_session(request, dash.sessions)
        version, records = cp.store.snapshot()
        return as_json({"items": [redact(rec.document()) for rec in records], "resourceVersion": str(version)})

    @r.get("/objects/{kind}/{namespace}/{name}")
    async def get_object(request: Request, kind: str, namespace: str, name: str) -> Response:
        require_session(request, dash.sessions)
        rec = record(kind, namespace, name)
        doc = rec.document()
        url = rec.status.get("url")
        metrics = bool(rec.kind == "ModelServer" and url and rec.status.get("ready")
                       and await dash.probe.has_metrics(str(url), server_token(rec)))
        containers = [{"name": c.name, "status": c.status, "image": c.image, "exitCode": c.exit_code}
                      for c in cp.containers(rec.kind, rec.namespace, rec.name)]
        return as_json({"object": redact(doc), "links": object_links(doc, metrics), "containers": containers})

    @r.get("/objects/{kind}/{namespace}/{name}/progress")
    def progress(request: Request, kind: str, namespace: str, name: str,
                 run: Optional[str] = Query(None, pattern=series.RUN_NAME.pattern)) -> Response:
        require_session(request, dash.sessions)
        rec = record(kind, namespace, name)
        found = series.load_series(cp.layout.object_dir(rec.kind, rec.namespace, rec.name), rec.kind, run)
        return as_json(found.wire())

    @r.get("/objects/{kind}/{namespace}/{name}/logs")
    def logs(request: Request, kind: str, namespace: str, name: str,
             lines: int = Query(200, ge=1, le=logtail.MAX_LINES)) -> Response:
        require_session(request, dash.sessions)
        return as_json({"lines": logtail.tail(cp, record(kind, namespace, name), lines)})

    @r.get("/objects/{kind}/{namespace}/{name}/lineage")
    def lineage_graph(request: Request, kind: str, namespace: str, name: str) -> Response:
        require_session(request, dash.sessions)
        rec = record(kind, namespace, name)
        return as_json(lineage.build_graph([x.document() for x in cp.store.records()], rec.key))

    @r.post("/objects/{kind}/{namespace}/{name}/generate")
    def generate(request: Request, kind: str, namespace: str, name: str,
                 body: playground.PlaygroundRequest) -> Response:
        require_csrf(request, dash.sessions)
        rec = record(kind, namespace, name)
        url = rec.status.get("url")
        if rec.kind != "ModelServer":
            raise ValidationError([("kind", f"the playground needs a ModelServer, not a {rec.kind}")])
        if not (rec.status.get("ready") and url):
            raise ValidationError([("status", f"server {name!r} is not serving yet")],
                                  hint=f"see `sub describe server {name}`")
        stream = playground.run(dash.http, str(url), server_token(rec), body)
        return StreamingResponse(stream, media_type="application/x-ndjson", headers=SECURITY_HEADERS)

    @r.get("/events")
    def watch_events(request: Request) -> Response:
        require_session(request, dash.sessions)
        since = events.resume_from(request.headers.get("last-event-id"), dash.hub)
        return StreamingResponse(events.stream(dash.hub, request, since), media_type="text/event-stream",
                                 headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"})

    return r
