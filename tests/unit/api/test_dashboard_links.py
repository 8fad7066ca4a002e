"""Links on object pages (api/dashboard/links.py): names, a server's /metrics only where it has one,
notebook tokens kept out of pages."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from substratus.api.dashboard.links import MetricsProbe, looks_like_prometheus, object_links, redact


def server(ready: bool = True) -> dict[str, Any]:
    return {"kind": "ModelServer", "metadata": {"name": "s", "namespace": "default"},
            "status": {"ready": ready, "url": "http://127.0.0.1:4000"}}


def notebook() -> dict[str, Any]:
    return {"kind": "Notebook", "metadata": {"name": "nb", "namespace": "team"},
            "status": {"ready": True, "url": "http://127.0.0.1:5000/?token=s3cret"}}


def test_a_server_links_its_docs_and_its_metrics_only_when_it_has_them() -> None:
    names = [(link["name"], link["href"]) for link in object_links(server(), has_metrics=True)]
    assert names == [("API docs", "http://127.0.0.1:4000/docs"), ("OpenAPI", "http://127.0.0.1:4000/openapi.json"),
                     ("Metrics", "http://127.0.0.1:4000/metrics")]
    assert [link["rel"] for link in object_links(server(), has_metrics=False)] == ["docs", "openapi"]
    assert object_links(server(ready=False), has_metrics=True) == []


def test_a_notebook_opens_through_the_dashboard_never_with_its_token_in_the_page() -> None:
    [link] = object_links(notebook(), has_metrics=False)
    assert link == {"name": "Open notebook", "href": "/ui/open/Notebook/team/nb", "rel": "open"}
    shown = redact(notebook())
    assert shown["status"]["url"] == "http://127.0.0.1:5000/" and "s3cret" not in str(shown)
    assert notebook()["status"]["url"].endswith("s3cret"), "redact must not change the stored document"


def test_other_kinds_have_no_links() -> None:
    assert object_links({"kind": "Dataset", "status": {"ready": True, "url": "file:///x"}}, True) == []


def test_prometheus_text_is_recognised() -> None:
    assert looks_like_prometheus("# HELP x y\n# TYPE x counter\nx 1\n")
    assert looks_like_prometheus("requests_total{code=\"200\"} 3\n")
    assert not looks_like_prometheus("<html>not found</html>")
    assert not looks_like_prometheus('{"detail": "Not Found"}')
    assert not looks_like_prometheus("")


def test_the_metrics_probe_asks_once_with_the_token_and_remembers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.port == 4000:
            return httpx.Response(200, text="# TYPE up gauge\nup 1\n")
        return httpx.Response(404, json={"detail": "Not Found"})

    now = [0.0]
    probe = MetricsProbe(httpx.AsyncClient(transport=httpx.MockTransport(handler)), clock=lambda: now[0])

    async def run() -> list[bool]:
        return [await probe.has_metrics("http://127.0.0.1:4000", "tok"), await probe.has_metrics("http://127.0.0.1:4000", "tok"),
                await probe.has_metrics("http://127.0.0.1:4001", None)]

    assert asyncio.run(run()) == [True, True, False]
    assert len(seen) == 2 and seen[0].headers["authorization"] == "Bearer tok"
    assert "authorization" not in seen[1].headers
    now[0] = 1000.0
    asyncio.run(probe.has_metrics("http://127.0.0.1:4000", "tok"))
    assert len(seen) == 3, "asked again once the remembered answer is old"
