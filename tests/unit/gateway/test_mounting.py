"""The gateway as a plain ASGI app: mounted under a prefix inside another app, and its lifespan."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from substratus.gateway import Gateway
from substratus.gateway.backends import Replica
from tests.unit.gateway.fakes import FakeBackends


def test_mounted_under_a_prefix_it_routes_below_it() -> None:
    gateway = Gateway(FakeBackends({"m": [Replica("r", "http://127.0.0.1:9")]}), keys=None)
    with TestClient(Starlette(routes=[Mount("/gateway", app=gateway)])) as client:
        assert [m["id"] for m in client.get("/gateway/v1/models").json()["data"]] == ["m"]
        assert client.get("/gateway/healthz").json() == {"ok": True}
        assert client.get("/v1/models").status_code == 404  # the outer app's, not the gateway's


def test_lifespan_shutdown_closes_the_upstream_connections() -> None:
    gateway = Gateway(FakeBackends({"m": [Replica("r", "http://127.0.0.1:9")]}), keys=None)
    with TestClient(gateway) as client:
        refused = client.post("/v1/completions", json={"model": "m", "prompt": "x"})
        session = gateway.upstream._session
        assert refused.status_code == 503 and session is not None and not session.closed
    assert session.closed
