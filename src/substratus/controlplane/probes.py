"""Small network helpers for the reconciler: readiness probes and free ports."""

from __future__ import annotations

import socket

import httpx


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Readiness of what answers at `url`.

    `.../docs` (a model server): the contract's GET /docs must answer 200; a
    server that also offers GET /readyz (beyond the contract) must answer 200
    there too, so that a server listening before its model is loaded is not
    called ready. Anything else (a notebook): any answer below 500.
    """
    try:
        resp = httpx.get(url, timeout=timeout, follow_redirects=True)
        if not url.endswith("/docs"):
            return resp.status_code < 500
        if resp.status_code != 200:
            return False
        ready = httpx.get(url.removesuffix("/docs") + "/readyz", timeout=timeout)
    except httpx.HTTPError:
        return False
    return ready.status_code in (200, 404, 405)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
