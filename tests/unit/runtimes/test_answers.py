"""Issue 25 item 5: what a container answers over HTTP is read with a byte cap and a deadline
(runtimes.answers), by the probes, the dashboard's /metrics check and the playground."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from substratus.api.dashboard.links import MetricsProbe
from substratus.api.dashboard.playground import PlaygroundRequest, run
from substratus.runtimes.readiness import status_of as status_at

BASE = "http://127.0.0.1:4000"


class Endless(httpx.AsyncByteStream):
    """A body that never ends (counts what was read, so a test can see it stopped early)."""

    def __init__(self, piece: bytes = b"x_total 1\n" * 1000) -> None:
        self.piece, self.sent = piece, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            self.sent += len(self.piece)
            yield self.piece


def test_the_metrics_check_reads_a_little_of_an_endless_body() -> None:
    body = Endless()
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200, stream=body)))
    assert asyncio.run(MetricsProbe(client).has_metrics(BASE, None)) is True
    assert body.sent < 200_000


def playground(handler: Any) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        return [json.loads(x) async for x in run(client, BASE, None, PlaygroundRequest(prompt="Hi", max_tokens=3))]

    return asyncio.run(go())


def test_an_endless_openapi_document_is_not_read_whole() -> None:
    body = Endless(b"{" * 65536)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/openapi.json":
            return httpx.Response(200, stream=body)
        return httpx.Response(200, json={"generation": "Hi there"})

    lines = playground(handler)
    assert lines[-1]["done"] is True and lines[-1]["api"] == "generate" and body.sent < 2 * 2**20


def test_an_endless_generation_ends_as_an_error_line() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/openapi.json":
            return httpx.Response(404)
        return httpx.Response(200, stream=Endless(b"a" * 2**20))

    lines = playground(handler)
    assert "error" in lines[-1] and "larger than" in lines[-1]["error"]


def test_an_endless_streamed_line_ends_as_an_error_line() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/openapi.json":
            return httpx.Response(200, json={"paths": {"/v1/completions": {}}})
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        return httpx.Response(200, stream=Endless(b"data: " + b"z" * 65536))

    lines = playground(handler)
    assert "error" in lines[-1] and "line of the answer is longer" in lines[-1]["error"]


class Slow:
    """A TCP server on 127.0.0.1 that answers with what `serve` writes, however slowly."""

    def __init__(self, serve: Any) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.serve = serve
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(4096)
            try:
                self.serve(conn)
            except OSError:
                pass


@pytest.fixture
def trickle() -> Iterator[Slow]:
    """One byte every 0.2 s, forever: each read alone is quick, the answer never ends."""
    def serve(conn: socket.socket) -> None:
        while True:
            conn.sendall(b"H")
            time.sleep(0.2)

    server = Slow(serve)
    yield server
    server.sock.close()


def status_of(port: int, path: str, timeout: float = 1.0) -> int | None:
    """What the readiness probes (local, and the helper in a pod) read."""
    return status_at("127.0.0.1", port, path, timeout)


def test_a_probe_of_a_trickling_server_gives_up_at_its_deadline(trickle: Slow) -> None:
    started = time.monotonic()
    assert status_of(trickle.port, "/docs", timeout=1.0) is None
    assert time.monotonic() - started < 1.5


def test_a_probe_reads_only_the_status_line() -> None:
    def serve(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"p" * 10_000_000)

    server = Slow(serve)
    try:
        assert status_of(server.port, "/docs") == 200
    finally:
        server.sock.close()
