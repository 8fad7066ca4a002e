"""Issue 7's holes, each reproduced through the real CLI, daemon and engine.

Every test here failed on the code before the issue was fixed (the reproduction is in its
docstring) and passes now. Refusals of bad input are counted in tests/reliability.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Sub
from tests.integration.test_runtime_failures import HEAD, busybox_image

DAEMON = [sys.executable, "-m", "substratus.api.daemon"]


def endpoint(sub: Sub) -> dict[str, object]:
    return dict(json.loads((sub.home / "controlplane.json").read_text()))


def token(sub: Sub) -> str:
    return (sub.home / "token").read_text().strip()


def daemon_children(pid: int, *words: str) -> list[str]:
    """Command lines of the daemon's child processes that contain all `words`."""
    out = []
    for p in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != pid:
                continue
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if all(w in cmd for w in words):
            out.append(cmd)
    return out


def test_an_upload_pack_url_runs_nothing_via_apply_or_verify(sub: Sub, tmp_path: Path) -> None:
    """Hole 1: `sub apply` of this URL used to create the marker (git ran `touch`), then refuse."""
    marker = tmp_path / "PWNED"
    url = f"--upload-pack=touch {marker};://x"
    (tmp_path / "m.yaml").write_text(f"{HEAD}kind: Model\nmetadata: {{name: m}}\n"
                                     f"spec: {{source: {{git: {{url: '{url}'}}}}}}\n")
    proc = sub("apply", "-f", str(tmp_path / "m.yaml"))
    assert not marker.exists(), "git ran the command in the URL"
    assert proc.returncode == 1 and "spec.source.git.url" in proc.stderr and "starts with '-'" in proc.stderr
    proc = sub("verify", "model", "--", url, timeout=120)
    assert proc.returncode != 0 and "starts with '-'" in proc.stdout + proc.stderr
    assert not marker.exists()


def test_home_and_state_are_private_under_a_permissive_umask(sub: Sub) -> None:
    """Hole 3: under umask 022 the home was 0755 and state.db 0644."""
    old = os.umask(0o022)
    try:
        sub.ok("up")
        sub.ok("get")
    finally:
        os.umask(old)
    assert stat.S_IMODE(sub.home.stat().st_mode) == 0o700
    for name in ("state.db", "token", "controlplane.json", "controlplane.log", "api.sock"):
        assert stat.S_IMODE((sub.home / name).stat().st_mode) == 0o600, name


def test_an_empty_token_file_is_replaced_and_empty_authorization_refused(sub: Sub) -> None:
    """Hole 2: an empty token file made `Authorization: Bearer ` (or none) match."""
    sub.home.mkdir(parents=True)
    (sub.home / "token").write_text("")
    sub.ok("up")
    assert len(token(sub)) >= 32
    assert "shorter than 32 characters" in (sub.home / "controlplane.log").read_text()
    port = int(str(endpoint(sub)["port"]))
    for headers in ({}, {"Authorization": ""}, {"Authorization": "Bearer "}, {"Authorization": "Bearer"}):
        assert status_of(port, headers) == 401, headers
    assert status_of(port, {"Authorization": f"Bearer {token(sub)}"}) == 200


def status_of(port: int, headers: dict[str, str]) -> int:
    """GET /api/v1/objects with exactly these headers (httpx refuses to send `Bearer `)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/api/v1/objects", headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


class Recorder:
    """A stranger's HTTP listener on a port: answers 200 to anything and keeps every byte."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.received = b""
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.received += conn.recv(65536)
                except OSError:
                    pass
                body = b'{"status": "ok", "version": "0", "engine": "podman", "items": []}'
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)

    def close(self) -> None:
        self.sock.close()


def test_a_stale_endpoint_never_gets_the_token(sub: Sub) -> None:
    """Hole 6: after kill -9 the CLI read the port from the stale endpoint file, asked /healthz
    there, and sent `Authorization: Bearer <token>` to whoever answered."""
    sub.ok("up")
    ep, secret = endpoint(sub), token(sub)
    os.kill(int(str(ep["pid"])), 9)
    time.sleep(0.5)
    stranger = Recorder(int(str(ep["port"])))
    try:
        proc = sub("get", "-o", "json", timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert secret.encode() not in stranger.received and b"Authorization" not in stranger.received
        assert endpoint(sub)["pid"] != ep["pid"], "a new control plane was started instead"
    finally:
        stranger.close()


def test_the_endpoint_file_appears_only_once_both_sockets_listen(sub: Sub) -> None:
    """Hole 6: the endpoint file was written before uvicorn bound the port."""
    sub.home.mkdir(parents=True)
    proc = subprocess.Popen(DAEMON, env=sub.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (sub.home / "controlplane.json").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.002)
        ep = endpoint(sub)
        socket.create_connection(("127.0.0.1", int(str(ep["port"]))), timeout=1).close()
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(ep["socket"]))
        s.close()
    finally:
        proc.terminate()
        proc.wait(30)


def test_logs_never_follow_a_link_a_container_planted(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    """Hole 4: load.sh planted logs/evil.log -> a host file, and `sub logs` printed the host file."""
    secret_file = tmp_path / "host-secret"
    secret_file.write_text("HOST-SECRET-CONTENT\n")
    busybox_image(tmp_path / "img", busybox, "/dataset", {
        "load.sh": f"echo loading; ln -s {secret_file} /dataset/logs/evil.log; ln -s {tmp_path} /dataset/logs/dir; "
                   'echo "{}" > "$LOAD_DATA_PATH"',
        "notebook.sh": "exec sleep 1000"})
    (tmp_path / "d.yaml").write_text(f"{HEAD}kind: Dataset\nmetadata: {{name: d}}\n"
                                     "spec: {filename: d.jsonl, source: {dir: img}}\n")
    assert sub("apply", "-f", str(tmp_path / "d.yaml"), "--wait", "--timeout", "300").returncode == 0
    out = sub.ok("logs", "dataset", "d")
    assert "loading" in out and "HOST-SECRET-CONTENT" not in out


@pytest.fixture
def follower_target(sub: Sub, tmp_path: Path, busybox: Path) -> Iterator[Sub]:
    busybox_image(tmp_path / "img", busybox, "/dataset", {"load.sh": "echo loading; exec sleep 600",
                                                        "notebook.sh": "exec sleep 1000"})
    (tmp_path / "d.yaml").write_text(f"{HEAD}kind: Dataset\nmetadata: {{name: d}}\n"
                                     "spec: {filename: d.jsonl, source: {dir: img}}\n")
    sub.ok("apply", "-f", str(tmp_path / "d.yaml"))
    deadline = time.monotonic() + 240
    # The status says Loading from the pass that starts the container; its output is there once it runs.
    while "Loading" not in sub.ok("get", "dataset", "d") or "loading" not in sub.ok("logs", "dataset", "d"):
        assert time.monotonic() < deadline, "the load container never started"
        time.sleep(1)
    yield sub


def open_follower(url: str, secret: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=60)
    s.sendall(f"GET /api/v1/objects/dataset/default/d/logs?follow=true HTTP/1.1\r\nHost: x\r\n"
              f"Authorization: Bearer {secret}\r\n\r\n".encode())
    got = b""
    while b"loading" not in got:
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    return s


@pytest.mark.timeout(300)
def test_forty_followers_leave_the_api_responsive_and_nothing_behind(follower_target: Sub) -> None:
    """Hole 5: 40 `sub logs -f` took every worker thread: /healthz hung, even after they left."""
    sub = follower_target
    ep, secret = endpoint(sub), token(sub)
    pid = int(str(ep["pid"]))
    followers = [open_follower(str(ep["url"]), secret) for _ in range(40)]
    try:
        started = time.monotonic()
        assert httpx.get(f"{ep['url']}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{ep['url']}/api/v1/objects", headers={"Authorization": f"Bearer {secret}"},
                         timeout=10).status_code == 200
        assert sub("get", "datasets", timeout=30).returncode == 0
        print(f"API answered in {time.monotonic() - started:.2f}s with {len(followers)} followers")
        assert len(daemon_children(pid, "logs", "-f")) == len(followers)
    finally:
        for s in followers:
            s.close()
    deadline = time.monotonic() + 20
    while daemon_children(pid, "logs", "-f") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert daemon_children(pid, "logs", "-f") == [], "a `logs -f` child outlived its client"


def test_a_build_that_runs_too_long_is_stopped(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    """Hole 7: builds had no timeout; SUBSTRATUS_BUILD_TIMEOUT bounds them."""
    busybox_image(tmp_path / "slow", busybox, "/model", {"serve.sh": "exit 1", "train.sh": "exit 1",
                                                         "notebook.sh": "exit 1"},
                  extra=f"RUN echo {time.time_ns()} && sleep 120\n")
    (tmp_path / "m.yaml").write_text(f"{HEAD}kind: Model\nmetadata: {{name: slow}}\nspec: {{source: {{dir: slow}}}}\n")
    sub.env["SUBSTRATUS_BUILD_TIMEOUT"] = "5"
    started = time.monotonic()
    proc = sub("apply", "-f", str(tmp_path / "m.yaml"), "--wait", "--timeout", "110")
    assert proc.returncode == 1 and "BuildFailed" in proc.stderr and "did not finish in 5s" in proc.stderr
    assert time.monotonic() - started < 100


def test_a_fifo_in_a_source_is_refused_at_once(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    """Hole 7: a FIFO in a dir source hung `apply` forever, holding the apply lock."""
    busybox_image(tmp_path / "img", busybox, "/model", {"serve.sh": "exit 1"})
    os.mkfifo(tmp_path / "img" / "pipe")
    (tmp_path / "m.yaml").write_text(f"{HEAD}kind: Model\nmetadata: {{name: m}}\nspec: {{source: {{dir: img}}}}\n")
    proc = sub("apply", "-f", str(tmp_path / "m.yaml"), timeout=60)
    assert proc.returncode == 1 and f"{tmp_path}/img/pipe" in proc.stderr and "FIFO" in proc.stderr
    assert json.loads(sub.ok("get", "-o", "json")) == {"items": []}
