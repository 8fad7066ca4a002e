"""Readiness probes of this machine's servers and notebooks, by the contract's readiness rule.

The rule is data (`contract.READINESS`: a server answers GET /docs, and GET /readyz
where it offers one; a notebook answers GET /); `runtimes.readiness` sends the
GETs through the host port that publishes the container's port and judges the
answers, as the helper in a Kubernetes pod does. Each GET is bounded by the
rule's timeout: probes run inside reconcile passes (a starting server is probed
every 100 ms), so they must be cheap.
"""

from __future__ import annotations

from substratus import contract
from substratus.runtimes import readiness


def http_probe(role: str, port: int) -> bool:
    """Whether the `role` ("server" or "notebook") container published on 127.0.0.1:`port` is ready."""
    return readiness.probe(contract.READINESS[role], "127.0.0.1", {contract.PORTS[role]: port})
