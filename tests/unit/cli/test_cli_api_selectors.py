"""The API's `labelSelector` on list and watch, against the control plane on the fake runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from substratus.api.app import create_app
from tests.unit.fakes.controlplane import Env, apply

TOKEN = "t" * 32
LABELLED = """
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: web, labels: {app: demo, tier: front}}
spec: {source: {dir: model}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: db, labels: {app: demo, tier: back}}
spec: {source: {dir: model}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: other}
spec: {source: {dir: model}}
"""


@pytest.fixture
def api(tmp_path: Path) -> TestClient:
    env = Env(tmp_path)
    apply(env, LABELLED)
    return TestClient(create_app(env.cp, TOKEN), headers={"Authorization": f"Bearer {TOKEN}"})


def names(api: TestClient, selector: str) -> list[str]:
    r = api.get("/api/v1/objects", params={"labelSelector": selector})
    assert r.status_code == 200, r.text
    return sorted(o["metadata"]["name"] for o in r.json()["items"])


def test_list_filters_by_label_selector(api: TestClient) -> None:
    assert names(api, "") == ["db", "other", "web"]
    assert names(api, "app=demo") == ["db", "web"]
    assert names(api, "tier in (front,side)") == ["web"]
    assert names(api, "tier notin (front)") == ["db", "other"]
    assert names(api, "!app") == ["other"]


def test_a_bad_selector_is_a_422_naming_the_parameter(api: TestClient) -> None:
    r = api.get("/api/v1/objects", params={"labelSelector": "tier in (a"})
    assert r.status_code == 422
    assert "labelSelector" in json.dumps(r.json())


def test_watch_sends_only_selected_objects(api: TestClient) -> None:
    with api.stream("GET", "/api/v1/watch", params={"labelSelector": "tier=back", "timeoutSeconds": "1"}) as r:
        events = [json.loads(line) for line in r.iter_lines() if line]
    added = [e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"]
    assert added == ["db"] and events[len(added)]["type"] == "BOOKMARK"


def test_batch_delete_refuses_an_empty_selector(api: TestClient) -> None:
    r = api.post("/api/v1/delete", params={"labelSelector": " "}, json={"objects": []})
    assert r.status_code == 422 and "would delete every object" in r.text
    assert names(api, "") == ["db", "other", "web"]


def test_a_request_fastapi_refuses_answers_in_the_error_shape_the_cli_reads(api: TestClient) -> None:
    from substratus.api.app import MAX_OBJECTS
    from substratus.api.errors import error_from_body
    from substratus.errors import ValidationError

    r = api.post("/api/v1/apply", json={"objects": [{}] * (MAX_OBJECTS + 1)})
    assert r.status_code == 422
    err = error_from_body(r.json())
    assert isinstance(err, ValidationError) and err.problems[0][0] == "objects"
    assert f"at most {MAX_OBJECTS}" in err.hint
    bad = error_from_body(api.post("/api/v1/apply", json={"objects": "x"}).json())
    assert isinstance(bad, ValidationError) and bad.problems[0][0] == "objects"


def test_a_framework_error_body_is_shown_not_unknown() -> None:
    from substratus.api.errors import error_from_body

    assert error_from_body({"detail": "Not Found"}).message == "Not Found"
    assert "too_long" in error_from_body({"detail": [{"type": "too_long"}]}).message
