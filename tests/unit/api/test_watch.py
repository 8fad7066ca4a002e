"""The store's change feed and the watch hub on top of it."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from substratus.api.watch import Gone, Hub
from substratus.local.store import Record, Store


def rec(name: str, generation: int = 1) -> Record:
    body = {"apiVersion": "substratus.ai/v1", "kind": "Notebook", "metadata": {"name": name, "namespace": "default"},
            "spec": {"modelName": "m", "suspend": True}}
    return Record("Notebook", "default", name, generation, body, {"ready": False})


def test_every_write_bumps_the_resource_version_and_survives_a_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    [a] = store.put_many([rec("a")], "t")
    b = store.update(a.key, lambda r: replace(r, status={"ready": True}), "t")
    assert b is not None and b.resource_version == a.resource_version + 1 and b.uid == a.uid
    assert store.update(a.key, lambda r: replace(r, status={"ready": True}), "t") is None, "no change, no write"
    store.close()
    again = Store(tmp_path / "s.db")
    assert again.resource_version == b.resource_version
    assert again.get(*a.key) == b


def test_a_failed_batch_stores_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    bad = replace(rec("b"), body={"unserialisable": object()})
    with pytest.raises(TypeError):
        store.put_many([rec("a"), bad], "t")
    assert store.records() == [] and store.resource_version == 0


def collect(hub: Hub, n: int, since: int | None = None, act: Any = None) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        gen = hub.watch(lambda r: True, since, heartbeat=5)
        async for item in gen:
            out.append(item)
            if item["type"] == "BOOKMARK" and act is not None:
                await asyncio.get_running_loop().run_in_executor(None, act)
            if len(out) >= n:
                await gen.aclose()
                return out
        return out

    return asyncio.run(asyncio.wait_for(run(), 10))


def test_watch_sends_the_current_objects_then_each_change(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    hub = Hub(store)
    store.put_many([rec("a")], "t")

    def change() -> None:
        store.update(("Notebook", "default", "a"), lambda r: replace(r, status={"ready": True}), "t")
        store.put_many([rec("b")], "t")
        store.delete_many([("Notebook", "default", "a")])

    events = collect(hub, 5, act=change)
    assert [(e["type"], e.get("object", {}).get("metadata", {}).get("name")) for e in events] == [
        ("ADDED", "a"), ("BOOKMARK", None), ("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    assert events[2]["object"]["status"] == {"ready": True}


def test_watch_resumes_from_a_resource_version_and_refuses_one_too_old(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    hub = Hub(store)
    store.put_many([rec("a")], "t")
    seen = store.resource_version
    store.put_many([rec("b"), rec("c")], "t")
    events = collect(hub, 3, since=seen)
    assert [e["object"]["metadata"]["name"] for e in events[:2]] == ["b", "c"] and events[2]["type"] == "BOOKMARK"
    fresh = Hub(store)  # knows no history: resuming from an old version must say "list again"
    with pytest.raises(Gone):
        fresh.check(1)
