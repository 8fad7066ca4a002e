"""Reading what a container answers over HTTP, with a byte cap and an overall deadline.

A server or notebook is untrusted: it can answer with an endless body, one line without an
end, or one byte a second. The control plane reads such answers in several places (readiness
probes, a server's /metrics for the dashboard, the playground's /openapi.json, /v1/models and
generations, `sub verify`'s checks); every one of them reads through this module, so none can
hold more than its cap in memory or wait past its deadline. Before this, opening a server's
dashboard page read its /metrics whole: a 160 MB body took the control plane from 65 MB to 1.44
GB. `status_line` is the probes' raw-socket read of a status code; the rest wrap httpx
responses (imported by whoever calls them: the control plane's start-up does not pay for it).
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import httpx

SMALL = 1 << 20          # /metrics, /openapi.json, /v1/models, a /generate answer, an error body
LINE = 1 << 20           # one line of a streamed answer
STREAM = 64 << 20        # a whole streamed generation


class AnswerTooLarge(Exception):
    """The answer went past its byte cap (the rest was never read)."""


class AnswerTooSlow(Exception):
    """The answer did not end before its deadline."""


def _past(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise AnswerTooSlow(f"{what} did not finish in time")


async def read_async(resp: "httpx.Response", cap: int = SMALL, deadline: Optional[float] = None) -> bytes:
    """At most `cap` bytes of a streamed response's body, or AnswerTooLarge; AnswerTooSlow past
    `deadline` (time.monotonic). Call it inside `client.stream(...)`."""
    buf = bytearray()
    async for chunk in raw_async(resp):
        buf += chunk
        if len(buf) > cap:
            raise AnswerTooLarge(f"the answer is larger than {cap} bytes")
        if deadline is not None:
            _past(deadline, "the answer")
    return bytes(buf)


async def raw_async(resp: "httpx.Response") -> AsyncIterator[bytes]:
    """The body as it came (never decompressed here: a small gzip body must not become a large one
    in memory); a response whose body was already read (a test's MockTransport) as it is."""
    import httpx

    try:
        async for chunk in resp.aiter_raw():
            yield chunk
    except httpx.StreamConsumed:
        yield resp.content


async def lines_async(resp: "httpx.Response", deadline: float, max_line: int = LINE,
                      cap: int = STREAM) -> AsyncIterator[str]:
    """A streamed answer's lines, each at most `max_line` bytes and all of them `cap`, before `deadline`."""
    pending, total = b"", 0
    async for chunk in raw_async(resp):
        total += len(chunk)
        if total > cap:
            raise AnswerTooLarge(f"the streamed answer is larger than {cap} bytes")
        _past(deadline, "the streamed answer")
        pending += chunk
        *whole, pending = pending.split(b"\n")
        if len(pending) > max_line:
            raise AnswerTooLarge(f"a line of the answer is longer than {max_line} bytes")
        for line in whole:
            yield line.rstrip(b"\r").decode("utf-8", errors="replace")
    if pending:
        yield pending.decode("utf-8", errors="replace")


def read_sync(resp: "httpx.Response", cap: int = SMALL, deadline: Optional[float] = None) -> bytes:
    """`read_async` for a synchronous client's streamed response."""
    buf = bytearray()
    for chunk in _raw(resp):
        buf += chunk
        if len(buf) > cap:
            raise AnswerTooLarge(f"the answer is larger than {cap} bytes")
        if deadline is not None:
            _past(deadline, "the answer")
    return bytes(buf)


def _raw(resp: "httpx.Response") -> Iterator[bytes]:
    import httpx

    try:
        yield from resp.iter_raw()
    except httpx.StreamConsumed:
        yield resp.content


def status_line(host: str, port: int, path: str, timeout: float, cap: int = 8192) -> Optional[int]:
    """The status code of `GET path`, reading no more than the status line (at most `cap` bytes)
    and waiting no longer than `timeout` in all; None when nothing usable came back."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            got = b""
            while b"\r\n" not in got and len(got) < cap:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                sock.settimeout(left)
                chunk = sock.recv(cap - len(got))
                if not chunk:
                    break
                got += chunk
    except OSError:
        return None
    parts = got.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1].isdigit() and len(parts[1]) == 3:
        return int(parts[1])
    return None
