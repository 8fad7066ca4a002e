"""Finding, starting and talking to the control plane over HTTP.

The CLI never touches the store or the engine directly for objects: it goes
through the same API any other client would use. It speaks HTTP/1.1 through
`cli.http1` (not httpx, nor http.client) so that `sub` starts fast:
re-applying an unchanged manifest should return well within a second, and
`sub get` of 1,000 objects within 0.25 s.

It talks over the Unix socket in the 0700 $SUBSTRATUS_HOME and checks the
peer's uid before sending the token (`api.unixsock`): a stale endpoint file
after a kill -9 must never make it send the token to whoever took the port.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, List, Optional  # List: `list` is a method name in Client
from urllib.parse import urlencode

from substratus.api import MAX_BODY_BYTES
from substratus.api.errors import error_from_body
from substratus.cli import http1
from substratus.errors import ControlPlaneError
from substratus.local.privatefiles import open_private_log, read_private, secure_home
from substratus.resources.objectkey import ObjectKey

if TYPE_CHECKING:
    import subprocess

START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 600.0


def read_until_eof(pipe: BinaryIO, timeout: float) -> bytes:
    """All a pipe carries until its writer closes it; ControlPlaneError after `timeout` seconds."""
    import select

    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([pipe], [], [], left)[0]:
            raise ControlPlaneError(f"the control plane did not answer within {timeout:.0f}s",
                                    hint="see $SUBSTRATUS_HOME/controlplane.log")
        chunk = os.read(pipe.fileno(), 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def home_dir() -> Path:
    return Path(os.environ.get("SUBSTRATUS_HOME") or Path.home() / ".substratus").expanduser().resolve()


class Client:
    def __init__(self, home: Path) -> None:
        self.home = home

    # -- discovery / lifecycle -----------------------------------------------------------------
    def endpoint(self) -> Optional[dict[str, Any]]:
        try:
            data = json.loads((self.home / "controlplane.json").read_text())
            return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None

    @property
    def socket_path(self) -> Path:
        return self.home / "api.sock"

    def healthy(self) -> Optional[dict[str, Any]]:
        """/healthz of our own daemon over its socket (with `pid`, from the socket's peer), or None."""
        resp = None
        try:
            resp, pid = http1.request(self.socket_path, "GET", "/healthz", {}, timeout=3)
            body = resp.read()
            return {**json.loads(body), "pid": pid} if resp.status == 200 else None
        except (OSError, ValueError, TypeError):
            return None
        finally:
            if resp is not None:
                resp.close()

    def start(self) -> dict[str, Any]:
        """Start the embedded control plane in the background unless one answers already."""
        if self.healthy():
            return self.endpoint() or {}
        return self._await(self._spawn())

    def _spawn(self, *args: str, pass_fds: tuple[int, ...] = ()) -> "subprocess.Popen[bytes]":
        import subprocess  # only to start the daemon

        secure_home(self.home)
        logf = open_private_log(self.home / "controlplane.log")
        try:
            return subprocess.Popen([sys.executable, "-m", "substratus.api.daemon", *args], stdout=logf, stderr=logf,
                                    stdin=subprocess.DEVNULL, start_new_session=True, pass_fds=pass_fds,
                                    env={**os.environ, "SUBSTRATUS_HOME": str(self.home)})
        finally:
            os.close(logf)

    def _await(self, proc: "subprocess.Popen[bytes]") -> dict[str, Any]:
        """Wait until the control plane answers; the end of its log when `proc` gave up instead."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.healthy():
                return self.endpoint() or {}
            # Exit 1: another daemon holds the lock (it answers soon). Anything else: it refused to start.
            if proc.poll() not in (None, 1):
                break
            time.sleep(0.05)
        tail = (self.home / "controlplane.log").read_text(errors="replace").splitlines()[-10:]
        code = proc.poll()
        what = "did not start within 30s" if code is None else f"exited with code {code}"
        hint = {2: "fix the setting named above", 3: "fix what the error above names"}.get(code or 0,
                                                                                            "check `podman info`")
        raise ControlPlaneError(f"the control plane {what}:\n" + "\n".join(tail),
                                hint=f"{hint}; the full log is {self.home / 'controlplane.log'}")

    def _start_applying(self, request: bytes) -> Optional[list[dict[str, Any]]]:
        """Start the control plane with this apply handed to it: it applies the objects as soon as its
        controller runs, before its HTTP server is even imported (~0.5 s sooner: the first `sub apply`
        on a fresh home should cost little more than typing the engine's commands by hand). The objects
        travel in a private file in the 0700 home, the answer on a pipe only this process holds.
        Returns None when it did not take the apply (another daemon was starting for this home); in
        every case once the control plane answers on its socket."""
        import tempfile

        secure_home(self.home)
        fd, name = tempfile.mkstemp(prefix=".first-apply-", suffix=".json", dir=self.home)
        answer = b""
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(request)
            r, w = os.pipe()
            try:
                proc = self._spawn("--first-apply", name, "--answer-fd", str(w), pass_fds=(w,))
            finally:
                os.close(w)
            with open(r, "rb") as pipe:  # until the daemon closes it: answered, or gone without answering
                answer = read_until_eof(pipe, REQUEST_TIMEOUT)
        finally:
            Path(name).unlink(missing_ok=True)
        # As after any command that started it, the control plane answers when `sub` returns (its first
        # builds already run meanwhile).
        self._await(proc)
        if not answer:
            return None
        reply = json.loads(answer)
        if int(reply["status"]) >= 400:
            raise error_from_body(reply["body"])
        return list(reply["body"])

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM the daemon that answers on our socket (its pid from the socket, never from a file)."""
        health = self.healthy()
        pid = int((health or {}).get("pid") or 0)
        if pid <= 0:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
        return True

    # -- requests --------------------------------------------------------------------------------
    def _headers(self, started: bool = False) -> dict[str, str]:
        if not started:
            self.start()
        token = read_private(self.home / "token").strip()
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def _send(self, method: str, path: str, body: Any = None, timeout: Optional[float] = REQUEST_TIMEOUT,
              started: bool = False) -> http1.Response:
        headers = self._headers(started)
        data = None if body is None else json.dumps(body).encode()
        try:
            resp, _pid = http1.request(self.socket_path, method, path, headers, data, timeout=timeout)
        except (OSError, http1.InvalidTarget) as err:
            raise ControlPlaneError(f"cannot reach the control plane: {err}",
                                    hint="run `sub up`, or see $SUBSTRATUS_HOME/controlplane.log") from err
        if resp.status >= 400:
            with closing(resp):
                raw = resp.read()
            try:
                raise error_from_body(json.loads(raw))
            except ValueError:
                raise ControlPlaneError(f"control plane answered {resp.status}: {raw[:300]!r}") from None
        return resp

    def request(self, method: str, path: str, *, json_body: Any = None, params: Optional[dict[str, str]] = None,
                started: bool = False) -> Any:
        if params:
            path += "?" + urlencode(params)
        with closing(self._send(method, path, json_body, started=started)) as resp:
            return json.loads(resp.read())

    def stream(self, path: str, params: dict[str, str], read_timeout: Optional[float] = None) -> Iterator[str]:
        with closing(self._send("GET", path + "?" + urlencode(params), timeout=read_timeout)) as resp:
            for line in resp.lines():
                yield line.decode("utf-8", errors="replace").rstrip("\n")

    def apply(self, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.healthy():
            request = json.dumps({"objects": objects}).encode()
            if len(request) > MAX_BODY_BYTES:  # the API refuses it, as always: handed over only what it takes
                self.start()
            elif (results := self._start_applying(request)) is not None:
                return results
        return list(self.request("POST", "/api/v1/apply", json_body={"objects": objects}, started=True))

    def list(self, kind: Optional[str] = None, namespace: Optional[str] = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("kind", kind), ("namespace", namespace)) if v}
        return list(self.request("GET", "/api/v1/objects", params=params)["items"])

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/objects/{kind}/{namespace}/{name}"))

    def describe(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/objects/{kind}/{namespace}/{name}/describe"))

    def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return dict(self.request("DELETE", f"/api/v1/objects/{kind}/{namespace}/{name}"))

    def delete_many(self, keys: List[ObjectKey]) -> List[dict[str, Any]]:
        body = {"objects": [{"kind": k, "namespace": ns, "name": n} for k, ns, n in keys]}
        return list(self.request("POST", "/api/v1/delete", json_body=body)["items"])

    def watch(self, kind: Optional[str] = None, namespace: Optional[str] = None,
              timeout: Optional[float] = None) -> Iterator[dict[str, Any]]:
        """Watch events (dicts) until the server ends the stream after `timeout` seconds."""
        params = {k: v for k, v in (("kind", kind), ("namespace", namespace)) if v}
        if timeout is not None:
            params["timeoutSeconds"] = str(int(timeout + 0.999))
        for line in self.stream("/api/v1/watch", params, read_timeout=60.0):
            if line:
                yield dict(json.loads(line))

    def logs(self, kind: str, namespace: str, name: str, follow: bool) -> Iterator[str]:
        return self.stream(f"/api/v1/objects/{kind}/{namespace}/{name}/logs", {"follow": str(follow).lower()})

    # -- selectors, dry runs, quick lookups (issue 13) -------------------------------------------
    def apply_dry_run(self, objects: List[dict[str, Any]]) -> List[dict[str, str]]:
        """Validate, resolve references and sources; nothing is stored or run."""
        return list(self.request("POST", "/api/v1/apply", json_body={"objects": objects},
                                 params={"dryRun": "true"}))

    def list_selected(self, kind: Optional[str], namespace: Optional[str],
                      selector: str) -> tuple[List[dict[str, Any]], str]:
        """Objects whose labels match `selector` ('' selects all), and the list's resourceVersion."""
        params = {k: v for k, v in (("kind", kind), ("namespace", namespace), ("labelSelector", selector)) if v}
        data = self.request("GET", "/api/v1/objects", params=params)
        return list(data["items"]), str(data.get("resourceVersion", ""))

    def watch_selected(self, kind: Optional[str], namespace: Optional[str], selector: str,
                       resource_version: Optional[str] = None) -> Iterator[dict[str, Any]]:
        """Watch events of the selected objects, resuming after `resource_version` when given."""
        params = {k: v for k, v in (("kind", kind), ("namespace", namespace), ("labelSelector", selector),
                                    ("resourceVersion", resource_version)) if v}
        for line in self.stream("/api/v1/watch", params, read_timeout=60.0):
            if line:
                yield dict(json.loads(line))

    def delete_selected(self, kind: Optional[str], namespace: Optional[str], selector: str) -> List[dict[str, Any]]:
        """Delete every object whose labels match `selector` (the server refuses an empty one)."""
        params = {k: v for k, v in (("kind", kind), ("namespace", namespace)) if v}
        params["labelSelector"] = selector
        return list(self.request("POST", "/api/v1/delete", json_body={"objects": []}, params=params)["items"])

    def running(self) -> bool:
        """Whether a control plane answers now; never starts one (shell completion must stay fast)."""
        return self.healthy() is not None
