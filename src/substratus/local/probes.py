"""Readiness probes of servers and notebooks, by the contract's readiness rule.

Only the status line is read, on a raw socket, within PROBE_TIMEOUT in all: probes run
inside reconcile passes (a starting server is probed every 100 ms), so they must be cheap
and bounded, and a server that answers one byte a second or sends endless headers must not
hold a reconcile worker (`runtimes.answers`).
"""

from __future__ import annotations

from typing import Optional

from substratus.build import contract
from substratus.runtimes.answers import status_line

PROBE_TIMEOUT = 1.0


def status_of(port: int, path: str, timeout: float = PROBE_TIMEOUT) -> Optional[int]:
    """The HTTP status of GET 127.0.0.1:port/path, or None when nothing answered in time."""
    return status_line("127.0.0.1", port, path, timeout)


def http_probe(role: str, port: int) -> bool:
    """A server: GET /docs answers 200 (and /readyz, when it has one); a notebook: anything below 500."""
    if role == "server":
        docs = status_of(port, contract.READY_PATH)
        if docs != 200:
            return False
        return contract.server_ready(docs, status_of(port, contract.READYZ_PATH))
    got = status_of(port, contract.NOTEBOOK_PATH)
    return got is not None and contract.notebook_ready(got)
