"""Small network helpers for the reconciler: readiness probes and free ports."""

from __future__ import annotations

import socket

import httpx


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when `url` answers below 500 for `/` probes, or 200 for `/docs`."""
    try:
        resp = httpx.get(url, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError:
        return False
    return resp.status_code == 200 if url.endswith("/docs") else resp.status_code < 500


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
