"""Server-sent events for live pages, fed by the watch hub (`api.watch.Hub`).

A browser's EventSource reconnects by itself and sends the id of the last
event it saw as `Last-Event-ID`; ids are resourceVersions, so a reconnect
resumes from the hub's history without missing a change. A fresh stream (or
one too far behind) starts with `reset`, then the current objects as ADDED,
then changes. Objects are redacted as everywhere in the dashboard.

A stream ends by itself after LIFETIME seconds (the browser reconnects at
once and resumes): uvicorn's graceful shutdown waits for open responses, and
`sub down` gives the daemon 30 s before it kills it, so an open browser tab
must not hold the daemon up longer than LIFETIME + HEARTBEAT.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Optional

from fastapi import Request

from substratus.api.dashboard.links import redact
from substratus.api.watch import Gone, Hub
from substratus.local.store import Record

LIFETIME = 20.0
HEARTBEAT = 5.0
RETRY_MS = 500


def resume_from(last_event_id: Optional[str], hub: Hub) -> Optional[int]:
    """The resourceVersion to resume from, or None to start afresh (none given, malformed, or too old)."""
    if not last_event_id or not last_event_id.strip().isdigit():
        return None
    since = int(last_event_id.strip())
    if since > hub.store.resource_version:
        return None  # an id from another daemon's life: start again
    try:
        hub.check(since)
    except Gone:
        return None
    return since


def frame(event: str, data: dict[str, Any], event_id: Optional[str] = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def encode(item: dict[str, Any], initial: bool) -> bytes:
    """One hub item as an SSE frame. Initial ADDED items carry no id: the BOOKMARK after them does."""
    kind = str(item["type"])
    if kind == "BOOKMARK":
        return frame("BOOKMARK", {}, str(item["resourceVersion"]))
    if kind == "ERROR":
        return frame("ERROR", {"message": item.get("message", "")})
    obj = redact(item["object"])
    version = str(obj.get("metadata", {}).get("resourceVersion", ""))
    return frame(kind, obj, None if initial else version)


def _everything(_: Record) -> bool:
    return True


async def stream(hub: Hub, request: Request, since: Optional[int], *, lifetime: float = LIFETIME,
                 heartbeat: float = HEARTBEAT) -> AsyncIterator[bytes]:
    deadline = time.monotonic() + lifetime
    yield f"retry: {RETRY_MS}\n\n".encode()
    initial = since is None
    if initial:
        yield frame("reset", {})
    async for item in hub.watch(_everything, since, heartbeat=heartbeat):
        yield encode(item, initial)
        if item["type"] == "BOOKMARK":
            initial = False
        if item["type"] == "ERROR" or time.monotonic() > deadline or await request.is_disconnected():
            return
