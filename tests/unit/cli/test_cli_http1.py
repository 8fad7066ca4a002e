"""`cli.http1`, the CLI's HTTP/1.1 over the daemon's Unix socket, against a scripted peer."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from substratus.api.unixsock import bind
from substratus.cli import http1
from substratus.cli.client import Client
from substratus.errors import NotFoundError

Answer = Callable[[socket.socket, bytes], None]


class Peer:
    """Accepts connections on a Unix socket; each is answered by the next scripted function."""

    def __init__(self, path: Path, answers: list[Answer]) -> None:
        self.sock = bind(path)
        self.answers = answers
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        for answer in self.answers:
            conn, _ = self.sock.accept()
            with conn:
                request = read_request(conn)
                self.requests.append(request)
                answer(conn, request)


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def canned(raw: bytes) -> Answer:
    return lambda conn, _request: conn.sendall(raw)


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "api.sock"


def test_a_body_with_a_content_length_is_read_whole_and_the_request_says_what_http_client_said(
        sock_path: Path) -> None:
    peer = Peer(sock_path, [canned(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\ncontent-type: application/json\r\n\r\n"
                                   b'{"a":1}')])
    resp, pid = http1.request(sock_path, "POST", "/api/v1/apply?dryRun=true", {"Authorization": "Bearer x"}, b"[]")
    assert (resp.status, resp.headers["content-type"], resp.read()) == (200, "application/json", b'{"a":1}')
    assert pid == os.getpid()  # the peer's pid, from the socket: here the test's own thread answers
    resp.close()
    peer.thread.join(5)
    head = peer.requests[0].decode().split("\r\n")
    assert head[0] == "POST /api/v1/apply?dryRun=true HTTP/1.1"
    assert {"Host: localhost", "Connection: close", "Authorization: Bearer x", "Content-Length: 2"} <= set(head)
    assert peer.requests[0].endswith(b"\r\n\r\n[]")


def test_chunked_lines_are_joined_across_chunks_and_the_last_line_needs_no_newline(sock_path: Path) -> None:
    body = b"6\r\none\ntw\r\n4;ext=1\r\no\nth\r\n3\r\nree\r\n0\r\nx-trailer: 1\r\n\r\n"
    Peer(sock_path, [canned(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)])
    resp, _ = http1.request(sock_path, "GET", "/logs", {})
    assert list(resp.lines()) == [b"one\n", b"two\n", b"three"]


def test_lines_are_handed_out_as_they_arrive(sock_path: Path) -> None:
    first_seen = threading.Event()

    def stream(conn: socket.socket, _request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
        assert first_seen.wait(5)
        conn.sendall(b"7\r\nsecond\n\r\n0\r\n\r\n")

    Peer(sock_path, [stream])
    resp, _ = http1.request(sock_path, "GET", "/api/v1/watch", {}, timeout=5)
    lines = resp.lines()
    assert next(lines) == b"first\n"
    first_seen.set()
    assert list(lines) == [b"second\n"]


def test_a_body_without_length_runs_until_the_peer_closes(sock_path: Path) -> None:
    Peer(sock_path, [canned(b"HTTP/1.1 200 OK\r\n\r\nall of it\nand more")])
    resp, _ = http1.request(sock_path, "GET", "/", {})
    assert resp.read() == b"all of it\nand more"


@pytest.mark.parametrize("raw", [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort",
                                 b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 200 OK\r\nContent-Le"])
def test_an_answer_that_breaks_off_or_is_not_http_is_a_connection_error(sock_path: Path, raw: bytes) -> None:
    Peer(sock_path, [canned(raw)])
    with pytest.raises(ConnectionError):
        resp, _ = http1.request(sock_path, "GET", "/", {}, timeout=5)
        resp.read()


def test_a_name_with_a_space_is_refused_before_connecting_as_http_client_did(sock_path: Path) -> None:
    with pytest.raises(http1.InvalidTarget, match=r"URL can't contain control characters\. "
                                                  r"'/api/v1/objects/Model/default/a b' \(found at least ' '\)"):
        http1.request(sock_path, "GET", "/api/v1/objects/Model/default/a b", {})


def healthz(conn: socket.socket, _request: bytes) -> None:
    body = json.dumps({"status": "ok", "version": "0", "engine": "fake"}).encode()
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))


def test_the_client_reads_lists_and_turns_error_answers_into_our_errors(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t" * 32)
    items = {"items": [{"kind": "Model", "metadata": {"name": "m"}}], "resourceVersion": "3"}
    listing = json.dumps(items).encode()
    missing = json.dumps({"error": {"type": "NotFoundError", "message": "Model 'x' not found", "hint": "h"}}).encode()
    peer = Peer(tmp_path / "api.sock", [
        healthz, canned(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(listing), listing)),
        healthz, canned(b"HTTP/1.1 404 Not Found\r\ncontent-length: %d\r\n\r\n%s" % (len(missing), missing))])
    client = Client(tmp_path)
    assert client.list_selected("Model", None, "app=x") == (items["items"], "3")
    with pytest.raises(NotFoundError, match="Model 'x' not found"):
        client.get("Model", "default", "x")
    peer.thread.join(5)
    assert peer.requests[1].startswith(b"GET /api/v1/objects?kind=Model&labelSelector=app%3Dx HTTP/1.1\r\n")
    assert b"Authorization: Bearer " + b"t" * 32 + b"\r\n" in peer.requests[1]
