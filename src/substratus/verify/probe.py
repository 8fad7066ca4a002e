"""HTTP probing of the servers the contract asks for (serve.sh, notebook.sh).

`HttpProbe` is the one narrow thing the checks need (send a request, get a
status and a body, or a `ProbeError` when nothing answered); `HttpxProbe`
does it for real and unit tests pass a fake. `wait_for_http` polls until a
server answers, the container dies, or the deadline passes, with the clock
and sleep injected so tests never wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional, Protocol

from substratus.runtimes.answers import AnswerTooLarge, AnswerTooSlow, read_sync


MAX_ANSWER = 16 << 20


class ProbeError(Exception):
    """Nothing usable came back: connection refused or reset, timeout, garbage."""


@dataclass
class HttpAnswer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class HttpProbe(Protocol):
    def request(self, method: str, url: str, *, body: Optional[bytes] = None,
                headers: Optional[dict[str, str]] = None, timeout: float = 10) -> HttpAnswer:
        """Send one request; raise ProbeError when no HTTP answer comes back."""


class HttpxProbe:
    """The real probe. Ignores proxy settings: the servers are on 127.0.0.1. The image under test is
    not trusted to answer briefly: a body is read up to MAX_ANSWER bytes, and no longer than the
    request's timeout in all (`runtimes.answers`)."""

    def request(self, method: str, url: str, *, body: Optional[bytes] = None,
                headers: Optional[dict[str, str]] = None, timeout: float = 10) -> HttpAnswer:
        import httpx  # imported here: only commands that probe servers pay for it

        deadline = time.monotonic() + timeout
        sent = {"Accept-Encoding": "identity", **(headers or {})}
        try:
            with httpx.Client(trust_env=False, timeout=timeout, follow_redirects=False) as client:
                with client.stream(method, url, content=body, headers=sent) as resp:
                    data = read_sync(resp, MAX_ANSWER, deadline)
                    return HttpAnswer(resp.status_code, data, dict(resp.headers))
        except httpx.HTTPError as err:
            raise ProbeError(f"{type(err).__name__}: {err or 'no answer'}") from err
        except (AnswerTooLarge, AnswerTooSlow) as err:
            raise ProbeError(str(err)) from err


@dataclass
class Clock:
    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class WaitResult:
    ok: bool
    detail: str
    seconds: float
    answer: Optional[HttpAnswer] = None


def wait_for_http(probe: HttpProbe, url: str, timeout: float, *, dead: Callable[[], Optional[str]],
                  clock: Clock, interval: float = 0.5) -> WaitResult:
    """Poll `url` until any HTTP answer comes back.

    `dead()` returns a description when the server's container has stopped
    (so a crashed server fails at once instead of after `timeout`).
    """
    start = clock.now()
    last = "no attempt made"
    while True:
        try:
            answer = probe.request("GET", url, timeout=min(5.0, max(timeout, 1.0)))
            return WaitResult(True, f"GET {url} -> {answer.status}", clock.now() - start, answer)
        except ProbeError as err:
            last = str(err)
        gone = dead()
        if gone:
            return WaitResult(False, gone, clock.now() - start)
        if clock.now() - start >= timeout:
            return WaitResult(False, f"no HTTP answer from {url} within {timeout:.0f}s (last error: {last})",
                              clock.now() - start)
        clock.sleep(interval)
