"""Every bound and timeout the gateway applies, in one frozen value.

Read once by whoever serves the gateway (the daemon, the cluster entry point)
and passed down; nothing here reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20


@dataclass(frozen=True)
class GatewaySettings:
    # Requests from clients.
    max_request_bytes: int = 1 * MIB     # a request body's cap (413 beyond); the model server's own default
    # Scale from zero: the longest a request is held while its model starts (then 503 + Retry-After).
    wake_timeout: float = 120.0
    retry_after: float = 5.0             # Retry-After (s) on a 503 when nothing better is known
    # Reading an upstream (a model server replica).
    connect_timeout: float = 5.0         # TCP connect to a replica
    read_timeout: float = 300.0          # the longest gap between two reads of an upstream answer
    request_timeout: float = 600.0       # one upstream exchange, first byte sent to last byte read
    max_response_bytes: int = 16 * MIB   # a non-streamed upstream answer's cap (502 beyond)
    max_event_bytes: int = 1 * MIB       # one server-sent event still incomplete (error event beyond)
    # Replicas.
    eject_seconds: float = 10.0          # a replica that refused a connection is skipped this long
    max_connections: int = 4096          # open upstream connections, all replicas together
    keepalive_seconds: float = 3.0       # idle upstream connections closed before uvicorn's 5 s does
