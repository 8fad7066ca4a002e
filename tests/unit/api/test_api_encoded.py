"""`GET /api/v1/objects` from documents encoded once per version (`api.encoded`)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from substratus.api.app import create_app
from substratus.api.encoded import EncodedDocuments
from substratus.local.store import Record, Store
from tests.unit.cli.test_cli_api_selectors import LABELLED, TOKEN
from tests.unit.fakes.controlplane import Env, apply


def record(name: str, generation: int = 1) -> Record:
    return Record(kind="Model", namespace="default", name=name, generation=generation,
                  body={"apiVersion": "substratus.ai/v1", "kind": "Model",
                        "metadata": {"name": name, "namespace": "default", "labels": {"ü": "ß"}},
                        "spec": {"source": {"dir": "model"}}},
                  status={"ready": False, "message": "naïve \"quoted\" \u2028 text"})


def test_the_list_is_byte_for_byte_what_encoding_the_documents_gives(tmp_path: Path) -> None:
    env = Env(tmp_path)
    apply(env, LABELLED)
    api = TestClient(create_app(env.cp, TOKEN), headers={"Authorization": f"Bearer {TOKEN}"})

    def expected(**query: str) -> bytes:
        recs = [r for r in env.store.records(query.get("kind"), None)
                if "labelSelector" not in query or r.labels.get("tier") == "front"]
        return json.dumps({"items": [r.document() for r in recs], "resourceVersion": str(env.store.resource_version)},
                          separators=(",", ":")).encode()

    for query in ({}, {"kind": "Model"}, {"labelSelector": "tier=front"}):
        for _ in range(2):  # encoded, then from the cache
            r = api.get("/api/v1/objects", params=query)
            assert (r.status_code, r.headers["content-type"], r.content) == (200, "application/json", expected(**query))
    apply(env, LABELLED.replace("tier: front", "tier: front, v: '2'"))  # new versions of the stored objects
    assert api.get("/api/v1/objects").content == expected()
    assert b'"v":"2"' in api.get("/api/v1/objects").content


def test_a_new_version_is_encoded_again_and_a_deleted_object_is_forgotten(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    docs = EncodedDocuments()
    store.subscribe(docs.forget)
    first = store.put_many([record("a"), record("b")], "2026-11-27T10:00:00Z")
    assert docs.array(first) == json.dumps([r.document() for r in first], separators=(",", ":"))
    assert docs.one(first[0]) is docs.one(first[0])  # the same string: encoded once
    [second] = store.put_many([record("a", generation=2)], "2026-11-27T10:00:01Z")
    assert json.loads(docs.one(second))["metadata"]["generation"] == 2
    # a list that read the old record just before the write still gets the old one, never a mix
    assert json.loads(docs.one(first[0]))["metadata"]["generation"] == 1
    assert docs.one(second) == json.dumps(second.document(), separators=(",", ":"))
    store.delete_many([("Model", "default", "a"), ("Model", "default", "b")])
    assert len(docs) == 0
    assert docs.array([]) == "[]"
