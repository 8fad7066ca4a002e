"""Hole 5 of issue 7, against the fake runtime: log followers hold no worker thread, the API
answers while 45 of them wait, and their disconnect ends every follow. (The same on podman,
with no `podman logs` child left, is in tests/integration/test_trust_engine.py.)"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from substratus.api.app import create_app
from substratus.build import naming
from substratus.local.controller import Controller
from substratus.local.service import ControlPlane
from substratus.local.store import Record, Store
from substratus.reconcile.layout import Layout
from substratus.runtimes.base import RunSpec
from substratus.runtimes.fake import FakeRuntime

TOKEN = "f" * 43
FOLLOWERS = 45


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, FakeRuntime]]:
    rt = FakeRuntime()
    layout = Layout(tmp_path / "home")
    store = Store(layout.db)
    store.put_many([Record("ModelServer", "default", "s", 1, {"kind": "ModelServer"}, {})], "now")
    name = "sub-server"
    rt.run(RunSpec(name=name, image="img", labels=naming.object_labels("ModelServer", "default", "s",
                                                                       instance=layout.instance, role="server")))
    rt.say(name, "listening on :8080")
    ctl = Controller(store, rt, layout, workers=0, executor_workers=0)
    ctl.observer.containers.relist()
    app = create_app(ControlPlane(store, rt, layout, ctl), TOKEN)
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", rt
    server.should_exit = True
    thread.join(10)


def open_follower(url: str) -> socket.socket:
    """A raw HTTP/1.1 `GET .../logs?follow=true`, read up to its first streamed line."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"GET /api/v1/objects/server/default/s/logs?follow=true HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
    got = b""
    while b"==> container" not in got:
        chunk = sock.recv(4096)
        assert chunk, f"the follow ended early: {got!r}"
        got += chunk
    assert got.startswith(b"HTTP/1.1 200")
    return sock


@pytest.mark.timeout(60)
def test_many_followers_do_not_starve_the_api_and_disconnect_frees_them(served: tuple[str, FakeRuntime]) -> None:
    url, rt = served
    followers = [open_follower(url) for _ in range(FOLLOWERS)]
    assert eventually(lambda: rt.followers == FOLLOWERS), f"only {rt.followers} follows started"
    started = time.monotonic()
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"{url}/api/v1/objects", headers={"Authorization": f"Bearer {TOKEN}"},
                     timeout=5).status_code == 200
    print(f"/healthz and GET /api/v1/objects with {FOLLOWERS} followers open: {time.monotonic() - started:.2f}s")
    rt.say("sub-server", "a new line")
    got = b""
    while b"a new line" not in got:
        chunk = followers[0].recv(4096)
        assert chunk, "followers still stream"
        got += chunk
    for sock in followers:
        sock.close()
    assert eventually(lambda: rt.followers == 0), f"{rt.followers} follows still open after every client left"


def eventually(cond: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
