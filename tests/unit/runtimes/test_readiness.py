"""The readiness rule applied by HTTP: the same code probes a local server through its published port
and answers a kubelet from inside a pod (the helper). Real sockets on 127.0.0.1, no engine."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from substratus import contract
from substratus.local.probes import http_probe
from substratus.runtimes import readiness


class Server:
    """A contract server whose answers a test sets: path -> status (absent: 404)."""

    def __init__(self) -> None:
        self.answers: dict[str, int] = {}
        answers = self.answers

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(answers.get(self.path, 404))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.http.server_address[1])
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def test_a_server_without_readyz_is_ready_once_docs_answers(server: Server) -> None:
    assert not http_probe("server", server.port)
    server.answers[contract.DOCS_PATH] = 200
    assert http_probe("server", server.port)


def test_a_server_with_readyz_is_ready_only_when_both_answer(server: Server) -> None:
    server.answers.update({contract.DOCS_PATH: 200, contract.READYZ_PATH: 503})
    assert not http_probe("server", server.port)
    server.answers[contract.READYZ_PATH] = 200
    assert http_probe("server", server.port)


def test_a_notebook_is_ready_when_its_root_answers(server: Server) -> None:
    assert not http_probe("notebook", server.port)
    server.answers[contract.NOTEBOOK_PATH] = 302  # Jupyter: to the login page
    assert http_probe("notebook", server.port)


def test_nothing_listening_is_not_ready() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as s:
        port = int(s.server_address[1])
    assert not http_probe("server", port)


def test_a_failed_required_check_stops_the_probe(server: Server) -> None:
    assert readiness.answers(contract.SERVER_READINESS, "127.0.0.1", {contract.SERVER_PORT: server.port}) == [404]


def test_the_helper_command_line_round_trips() -> None:
    for rule in contract.READINESS.values():
        assert readiness.parse_args(readiness.helper_args(rule, 9450)) == (rule, 9450)


def test_the_helper_answers_the_kubelet_by_the_rule(server: Server) -> None:
    rule = contract.Readiness(tuple(contract.HttpGet(c.path, server.port, c.optional)
                                    for c in contract.SERVER_READINESS.checks))
    helper = readiness.serve(rule, 0)
    threading.Thread(target=helper.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{helper.server_address[1]}/"
    try:
        got = httpx.get(url, timeout=5)
        assert got.status_code == 503 and got.json()["ready"] is False
        server.answers.update({contract.DOCS_PATH: 200, contract.READYZ_PATH: 503})
        assert httpx.get(url, timeout=5).status_code == 503
        server.answers[contract.READYZ_PATH] = 200
        got = httpx.get(url, timeout=5)
        assert got.status_code == 200 and [c["status"] for c in got.json()["checks"]] == [200, 200]
    finally:
        helper.shutdown()
        helper.server_close()
