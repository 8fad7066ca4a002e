"""Server-sent events for live pages (api/dashboard/events.py), fed by a real store and watch hub."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from substratus.api.dashboard import events
from substratus.api.watch import Hub
from substratus.local.store import Record, Store


class Browser:
    """Stands in for the request: never disconnects."""

    async def is_disconnected(self) -> bool:
        return False


def rec(name: str, url: str = "") -> Record:
    body = {"apiVersion": "substratus.ai/v1", "kind": "Notebook", "metadata": {"name": name, "namespace": "default"},
            "spec": {"modelName": "m"}}
    return Record("Notebook", "default", name, 1, body, {"ready": bool(url), **({"url": url} if url else {})})


def frames(raw: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for chunk in raw:
        fields = dict(line.split(": ", 1) for line in chunk.decode().strip().splitlines() if ": " in line)
        if "event" in fields:
            out.append({"event": fields["event"], "id": fields.get("id"), "data": json.loads(fields["data"])})
    return out


def read(hub: Hub, since: int | None, n: int, act: Any = None) -> list[dict[str, Any]]:
    pending = [act] if act is not None else []

    async def go() -> list[bytes]:
        out: list[bytes] = []
        gen = events.stream(hub, Browser(), since, lifetime=30, heartbeat=5)  # type: ignore[arg-type]
        async for chunk in gen:
            out.append(chunk)
            if b"event: BOOKMARK" in chunk and pending:
                await asyncio.get_running_loop().run_in_executor(None, pending.pop())
            if len(frames(out)) >= n:
                await gen.aclose()
                break
        return out

    return frames(asyncio.run(asyncio.wait_for(go(), 10)))


def test_a_fresh_stream_resets_lists_then_follows_changes_with_resumable_ids(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    hub = Hub(store)
    [a] = store.put_many([rec("a")], "t")

    def change() -> None:
        store.update(a.key, lambda r: replace(r, status={"ready": True, "url": "http://127.0.0.1:1/?token=sekret"}),
                     "t")

    got = read(hub, None, 4, act=change)
    assert [f["event"] for f in got] == ["reset", "ADDED", "BOOKMARK", "MODIFIED"]
    assert got[1]["id"] is None, "initial objects carry no id: the bookmark after them does"
    assert got[2]["id"] == str(a.resource_version)
    assert got[3]["id"] == str(a.resource_version + 1)
    assert got[3]["data"]["status"]["url"] == "http://127.0.0.1:1/", "a notebook's token never goes to the page"


def test_a_reconnect_resumes_without_a_reset(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    hub = Hub(store)
    [a] = store.put_many([rec("a")], "t")
    store.put_many([rec("b")], "t")
    since = events.resume_from(str(a.resource_version), hub)
    assert since == a.resource_version
    got = read(hub, since, 2)
    assert [f["event"] for f in got] == ["ADDED", "BOOKMARK"] and got[0]["data"]["metadata"]["name"] == "b"


def test_unusable_last_event_ids_start_afresh(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    hub = Hub(store)
    store.put_many([rec("a")], "t")
    for bad in (None, "", "abc", "-1", "999"):
        assert events.resume_from(bad, hub) is None, bad
