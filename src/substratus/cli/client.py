"""Finding, starting and talking to the control plane over HTTP.

The CLI never touches the store or the engine directly for objects: it goes
through the same API any other client would use.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import httpx

from substratus.api.errors import error_from_body
from substratus.errors import ControlPlaneError

START_TIMEOUT = 30.0


def home_dir() -> Path:
    return Path(os.environ.get("SUBSTRATUS_HOME") or Path.home() / ".substratus").expanduser().resolve()


class Client:
    def __init__(self, home: Path) -> None:
        self.home = home
        self._http: Optional[httpx.Client] = None

    # -- discovery / lifecycle -----------------------------------------------------------------
    def endpoint(self) -> Optional[dict[str, Any]]:
        try:
            data = json.loads((self.home / "controlplane.json").read_text())
            return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None

    def healthy(self) -> Optional[dict[str, Any]]:
        ep = self.endpoint()
        if not ep:
            return None
        try:
            resp = httpx.get(f"{ep['url']}/healthz", timeout=3)
            return dict(resp.json()) if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def start(self) -> dict[str, Any]:
        """Start the embedded control plane in the background unless one answers already."""
        if self.healthy():
            return self.endpoint() or {}
        self.home.mkdir(parents=True, exist_ok=True)
        logf = open(self.home / "controlplane.log", "ab")
        subprocess.Popen([sys.executable, "-m", "substratus.api.daemon"], stdout=logf, stderr=logf,
                         stdin=subprocess.DEVNULL, start_new_session=True, env={**os.environ,
                                                                                 "SUBSTRATUS_HOME": str(self.home)})
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.healthy():
                return self.endpoint() or {}
            time.sleep(0.2)
        tail = (self.home / "controlplane.log").read_text(errors="replace").splitlines()[-10:]
        raise ControlPlaneError("the control plane did not start within 30s:\n" + "\n".join(tail),
                                hint=f"see {self.home / 'controlplane.log'}; check `podman info`")

    def stop(self, timeout: float = 30.0) -> bool:
        ep = self.endpoint()
        if not ep or not self.healthy():
            return False
        os.kill(int(ep["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(int(ep["pid"]), 0)
            except ProcessLookupError:
                return True
            time.sleep(0.2)
        os.kill(int(ep["pid"]), signal.SIGKILL)
        return True

    # -- requests --------------------------------------------------------------------------------
    def http(self) -> httpx.Client:
        if self._http is None:
            ep = self.start()
            token = (self.home / "token").read_text().strip()
            self._http = httpx.Client(base_url=ep["url"], headers={"Authorization": f"Bearer {token}"},
                                      timeout=httpx.Timeout(600, connect=5))
        return self._http

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self.http().request(method, path, **kw)
        except httpx.HTTPError as err:
            raise ControlPlaneError(f"cannot reach the control plane: {err}",
                                    hint="run `sub up`, or see $SUBSTRATUS_HOME/controlplane.log") from err
        if resp.status_code >= 400:
            try:
                raise error_from_body(resp.json())
            except ValueError:
                raise ControlPlaneError(f"control plane answered {resp.status_code}: {resp.text[:300]}") from None
        return resp.json()

    def stream(self, path: str, params: dict[str, Any]) -> Iterator[str]:
        with self.http().stream("GET", path, params=params, timeout=None) as resp:
            if resp.status_code >= 400:
                resp.read()
                raise error_from_body(resp.json())
            yield from resp.iter_lines()

    def apply(self, objects: list[dict[str, Any]]) -> list[dict[str, str]]:
        return list(self.request("POST", "/api/v1/apply", json={"objects": objects}))

    def list(self, kind: Optional[str] = None, namespace: Optional[str] = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("kind", kind), ("namespace", namespace)) if v}
        return list(self.request("GET", "/api/v1/objects", params=params)["items"])

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/objects/{kind}/{namespace}/{name}"))

    def describe(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v1/objects/{kind}/{namespace}/{name}/describe"))

    def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return dict(self.request("DELETE", f"/api/v1/objects/{kind}/{namespace}/{name}"))

    def logs(self, kind: str, namespace: str, name: str, follow: bool) -> Iterator[str]:
        return self.stream(f"/api/v1/objects/{kind}/{namespace}/{name}/logs", {"follow": str(follow).lower()})
