"""A server that listens before its model is loaded answers 503 for a while; verify waits for it."""

from __future__ import annotations

import json
from typing import Optional

from substratus.verify.checks_serve import Server, check_generate
from substratus.verify.probe import Clock, HttpAnswer


class LoadingServer:
    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.calls = 0

    def request(self, method: str, url: str, *, body: Optional[bytes] = None,
                headers: Optional[dict[str, str]] = None, timeout: float = 10) -> HttpAnswer:
        self.calls += 1
        if self.calls <= self.busy:
            return HttpAnswer(503, b'{"detail": "model is still loading"}', {})
        prompt = json.loads(body or b"{}")["prompt"]
        return HttpAnswer(200, json.dumps({"generation": prompt + " and more"}).encode(), {})


class FakeClock(Clock):
    def __init__(self) -> None:
        self.t = 0.0
        super().__init__(now=lambda: self.t, sleep=self._sleep)

    def _sleep(self, s: float) -> None:
        self.t += s


SERVER = Server("c", "serve.sh", 8080, 1234)


def test_503_while_loading_is_retried_within_the_warmup() -> None:
    probe = LoadingServer(busy=3)
    out = check_generate(probe, SERVER, "Hi", 4, timeout=5, warmup=60, clock=FakeClock())
    assert out.ok and probe.calls == 4 and "503" in out.evidence


def test_503_after_the_warmup_fails() -> None:
    probe = LoadingServer(busy=1000)
    out = check_generate(probe, SERVER, "Hi", 4, timeout=5, warmup=10, clock=FakeClock())
    assert not out.ok and "503" in out.evidence
