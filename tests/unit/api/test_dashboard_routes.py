"""The dashboard's HTTP surface (api/dashboard/*) on the real app, fake runtime, real store.

Logging in with a code, the cookie's attributes, what a page may and may not see (never the API token,
never a notebook token), CSRF and Host checks, and the data endpoints.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from substratus.api.app import create_app
from substratus.api.dashboard import Dashboard
from substratus.local.controller import Controller
from substratus.local.service import ControlPlane
from substratus.local.store import Record, Store
from substratus.reconcile.layout import Layout
from substratus.runtimes.fake import FakeRuntime

TOKEN = "api-token-that-must-never-reach-a-browser"
BASE = "http://127.0.0.1:8123"
ORIGIN = {"Origin": BASE}
NB_URL = "http://127.0.0.1:5000/?token=notebook-secret"


def record(kind: str, name: str, spec: dict[str, Any], status: dict[str, Any], state: Any = None) -> Record:
    body = {"apiVersion": "substratus.ai/v1", "kind": kind, "metadata": {"name": name, "namespace": "default"},
            "spec": spec}
    return Record(kind, "default", name, 1, body, status, state or {})


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[TestClient, ControlPlane, Dashboard]]:
    rt = FakeRuntime()
    layout = Layout(tmp_path / "home")
    store = Store(layout.db)
    ctl = Controller(store, rt, layout, workers=0, executor_workers=0)
    cp = ControlPlane(store, rt, layout, ctl)
    store.put_many([
        record("Model", "m", {"source": {"dir": "x"}}, {"ready": True, "containerImage": "img:1"}),
        record("ModelServer", "s", {"modelName": "m"}, {"ready": True, "url": "http://127.0.0.1:4000"},
               {"token": "server-secret", "port": 4000}),
        record("Notebook", "nb", {"modelName": "m"}, {"ready": True, "url": NB_URL}),
    ], "2026-11-27T00:00:00Z")
    app = create_app(cp, TOKEN)
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        yield client, cp, app.state.dashboard
    store.close()


def login(client: TestClient) -> str:
    code = client.post("/api/v1/dashboard/codes", headers={"Authorization": f"Bearer {TOKEN}"}).json()["code"]
    resp = client.post("/ui/login", content=f"code={code}", headers={**ORIGIN,
                                                                    "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/"
    return str(resp.headers["set-cookie"])


def csrf(client: TestClient) -> dict[str, str]:
    return {**ORIGIN, "X-CSRF-Token": client.get("/ui/api/session").json()["csrfToken"]}


def test_codes_need_the_api_token(env: Any) -> None:
    client, _, _ = env
    assert client.post("/api/v1/dashboard/codes").status_code == 401
    assert client.post("/api/v1/dashboard/codes", headers={"Authorization": "Bearer nope"}).status_code == 401
    answer = client.post("/api/v1/dashboard/codes", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert answer["path"] == f"/ui/login#code={answer['code']}" and answer["expiresIn"] == 120


def test_logging_in_sets_a_strict_http_only_scoped_expiring_cookie(env: Any) -> None:
    client, _, _ = env
    assert client.get("/ui/").headers["location"] == "/ui/login"
    assert client.get("/ui/api/objects").status_code == 401
    cookie = login(client)
    assert re.match(r"substratus_session_8123=[\w-]{40,};", cookie)
    for attribute in ("HttpOnly", "Path=/ui", "SameSite=strict", "Max-Age=43200"):
        assert attribute in cookie, cookie
    assert client.get("/ui/").status_code == 200


def test_a_login_from_another_origin_or_with_a_used_code_is_refused(env: Any) -> None:
    client, _, dash = env
    code, _ = dash.codes.issue()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    resp = client.post("/ui/login", content=f"code={code}", headers={**form, "Origin": "http://evil.example"})
    assert resp.headers["location"] == "/ui/login?error=origin" and "set-cookie" not in resp.headers
    assert client.post("/ui/login", content=f"code={code}", headers={**form, **ORIGIN}).status_code == 303
    again = client.post("/ui/login", content=f"code={code}", headers={**form, **ORIGIN})
    assert again.headers["location"] == "/ui/login?error=code"


def test_pages_never_show_the_api_token_or_a_notebook_token(env: Any) -> None:
    client, _, _ = env
    login(client)
    bodies = [client.get(p).text for p in ("/ui/", "/ui/login", "/ui/api/session", "/ui/api/objects",
                                           "/ui/api/objects/Notebook/default/nb",
                                           "/ui/api/objects/ModelServer/default/s")]
    bodies += [client.get(f"/ui/static/{name}").text for name in ("js/app.js", "js/api.js", "css/dashboard.css")]
    for body in bodies:
        assert TOKEN not in body and "notebook-secret" not in body and "server-secret" not in body
    nb = client.get("/ui/api/objects/Notebook/default/nb").json()
    assert nb["object"]["status"]["url"] == "http://127.0.0.1:5000/"
    assert nb["links"] == [{"name": "Open notebook", "href": "/ui/open/Notebook/default/nb", "rel": "open"}]
    opened = client.get("/ui/open/Notebook/default/nb")
    assert opened.status_code == 303 and opened.headers["location"] == NB_URL


def test_every_ui_response_carries_the_content_security_policy(env: Any) -> None:
    client, _, _ = env
    login(client)
    for path in ("/ui/", "/ui/login", "/ui/static/js/app.js", "/ui/api/objects"):
        csp = client.get(path).headers["content-security-policy"]
        assert "default-src 'self'" in csp and "connect-src 'self'" in csp, path


def test_only_shipped_assets_are_served(env: Any) -> None:
    client, _, _ = env
    assert client.get("/ui/static/js/app.js").headers["content-type"].startswith("text/javascript")
    for bad in ("/ui/static/../pages.py", "/ui/static/%2e%2e/pages.py", "/ui/static/nope.js", "/ui/static/"):
        assert client.get(bad).status_code == 404, bad


def test_a_foreign_host_is_refused(env: Any) -> None:
    client, _, _ = env
    login(client)
    for path in ("/ui/login", "/ui/api/objects"):
        assert client.get(path, headers={"Host": "evil.example:8123"}).status_code == 421


def test_state_changing_requests_need_the_csrf_token_and_our_origin(env: Any) -> None:
    client, _, _ = env
    login(client)
    path = "/ui/api/objects/ModelServer/default/s/generate"
    body = {"prompt": "hi", "max_tokens": 3}
    assert client.post(path, json=body, headers=ORIGIN).status_code == 403
    good = csrf(client)
    assert client.post(path, json=body, headers={**good, "Origin": "http://evil.example"}).status_code == 403
    assert client.post("/ui/logout", headers=ORIGIN).status_code == 403
    assert client.post("/ui/logout", headers=good).status_code == 200
    assert client.get("/ui/api/objects").status_code == 401


def test_the_playground_reaches_the_server_with_its_token(env: Any) -> None:
    client, _, dash = env
    login(client)
    seen: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/openapi.json":
            return httpx.Response(200, json={"paths": {"/generate": {}}})
        return httpx.Response(200, json={"generation": "hi there"})

    dash.http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    resp = client.post("/ui/api/objects/ModelServer/default/s/generate", json={"prompt": "hi", "max_tokens": 3},
                       headers=csrf(client))
    lines = [json.loads(x) for x in resp.text.splitlines()]
    assert lines[0] == {"text": " there"} and lines[-1]["done"] is True
    assert {r.url.host for r in seen} == {"127.0.0.1"} and seen[-1].headers["authorization"] == "Bearer server-secret"
    bad = client.post("/ui/api/objects/ModelServer/default/s/generate", json={"prompt": "", "max_tokens": 0},
                      headers=csrf(client))
    assert bad.status_code == 422
    assert client.post("/ui/api/objects/Model/default/m/generate", json={"prompt": "x"},
                       headers=csrf(client)).status_code == 422


def test_progress_logs_and_lineage_endpoints(env: Any) -> None:
    client, cp, _ = env
    login(client)
    run = cp.layout.object_dir("Model", "default", "m") / "0123456789abcdef"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "progress.jsonl").write_text('{"step": 1, "loss": 2.5}\nnot json\n{"step": 2, "loss": 2.0}\n')
    (run / "logs" / "train.log").write_text("line one\nline two\n")
    (run / "job.log").write_text("job says hi\n")
    series = client.get("/ui/api/objects/Model/default/m/progress").json()
    assert [p["loss"] for p in series["points"]] == [2.5, 2.0] and series["skipped"] == 1
    assert client.get("/ui/api/objects/Model/default/m/progress?run=../../etc").status_code == 422
    lines = client.get("/ui/api/objects/Model/default/m/logs?lines=50").json()["lines"]
    assert "line two" in lines and "job says hi" in lines and not any("loss" in x for x in lines)
    graph = client.get("/ui/api/objects/Model/default/m/lineage").json()
    assert {n["id"] for n in graph["nodes"]} == {"Model/default/m", "ModelServer/default/s", "Notebook/default/nb"}
    assert client.get("/ui/api/objects/Model/default/nope").status_code == 404


def test_the_session_lists_every_reason_with_its_category(env: Any) -> None:
    client, _, _ = env
    login(client)
    reasons = client.get("/ui/api/session").json()["reasons"]
    assert reasons["TrainFailed"]["category"] == "failed" and reasons["Serving"]["category"] == "done"
    assert reasons["Training"]["category"] == "progress" and reasons["Training"]["description"]


MOUNT_CHECK = """
import sys
from pathlib import Path
from fastapi.testclient import TestClient
from substratus.api.app import create_app
from substratus.local.controller import Controller
from substratus.reconcile.layout import Layout
from substratus.local.service import ControlPlane
from substratus.local.store import Store
from substratus.runtimes.fake import FakeRuntime

layout = Layout(Path(sys.argv[1]))
store = Store(layout.db)
rt = FakeRuntime()
cp = ControlPlane(store, rt, layout, Controller(store, rt, layout, workers=0, executor_workers=0))
client = TestClient(create_app(cp, "t" * 32), base_url="http://127.0.0.1:8123", follow_redirects=False)
pages = lambda: sorted(m for m in ("substratus.api.dashboard.pages", "substratus.api.dashboard.data") if m in sys.modules)
before = client.get("/openapi.json").content
print(pages(), client.get("/healthz").status_code, pages(), client.get("/ui/login").status_code, pages(),
      client.get("/openapi.json").content == before)
"""


def test_the_dashboards_pages_are_built_at_the_first_ui_request_and_the_openapi_document_stays(
        tmp_path: Path) -> None:
    """A control plane no browser looks at does not import or build them at start-up (issue 8)."""
    out = subprocess.run([sys.executable, "-c", MOUNT_CHECK, str(tmp_path / "home")], capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["[]", "200", "[]", "200",
                           "['substratus.api.dashboard.data',", "'substratus.api.dashboard.pages']", "True"]


def test_another_clients_wrong_codes_never_block_a_browsers_login(env: Any) -> None:
    """Issue 25 item 10: twenty wrong codes from any local process revoked every outstanding code."""
    client, cp, dash = env
    form = {**ORIGIN, "Content-Type": "application/x-www-form-urlencoded"}
    code = client.post("/api/v1/dashboard/codes", headers={"Authorization": f"Bearer {TOKEN}"}).json()["code"]
    with TestClient(client.app, base_url=BASE, follow_redirects=False) as attacker:
        attacker.get("/ui/login")
        for _ in range(25):
            attacker.post("/ui/login", content="code=AAAAA-AAAAA", headers=form)
        assert attacker.post("/ui/login", content="code=BBBBB-BBBBB", headers=form).headers["location"] == \
            "/ui/login?error=wait"
    assert "substratus_login_8123" in client.get("/ui/login").headers["set-cookie"]
    resp = client.post("/ui/login", content=f"code={code}", headers=form)
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/"
