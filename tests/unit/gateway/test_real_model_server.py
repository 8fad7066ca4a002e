"""The gateway in front of a real `substratus-ml serve` on a tiny model, started from zero by
the first request: what a user's openai client sees end to end.

Needs the ML package's environment (`make venv-ml`, torch on CPU); skipped saying so
without it. About 30 s on two shared cores, most of it the server's own start.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Optional

import httpx
import openai
import pytest

from substratus.gateway import Gateway, KeyStore, Load, ModelInfo, ModelState, NotReadyInTime, Replica, UnknownModel
from tests.unit.gateway.fakes import LiveServer, free_port

REPO = Path(__file__).resolve().parents[3]
ML = REPO / ".venv-ml" / "bin" / "substratus-ml"
CORPUS = ("The quick brown fox jumps over the lazy dog.\nA journey of a thousand miles begins with a single "
          "step.\nAll that glitters is not gold; all who wander are not lost.\n") * 20

pytestmark = pytest.mark.skipif(not ML.exists(), reason=f"{ML} is missing: `make venv-ml` builds it")


class ProcessBackends:
    """One model served by a `substratus-ml serve` process that the first request starts."""

    def __init__(self, model_dir: Path, log: Path) -> None:
        self.model_dir, self.log = model_dir, log
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.ready: list[Replica] = []
        self.starts = 0
        self.loads: list[Load] = []

    async def models(self) -> Sequence[ModelInfo]:
        return [ModelInfo("tiny", ModelState.RUNNING if self.ready else ModelState.STOPPED, created=1)]

    def replicas(self, model: str) -> Sequence[Replica]:
        if model != "tiny":
            raise UnknownModel(model)
        return self.ready

    async def wake(self, model: str, *, wait: float) -> Sequence[Replica]:
        self.starts += 1
        port = free_port()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(ML), "serve", "--model-dir", str(self.model_dir), "--host", "127.0.0.1", "--port", str(port),
                 "--model-name", "tiny", "--max-new-tokens", "32"], stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as client:
            for _ in range(int(wait / 0.1)):
                try:
                    if (await client.get(f"{url}/readyz")).status_code == 200:
                        self.ready = [Replica(f"pid-{self.process.pid}", url)]
                        return self.ready
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise NotReadyInTime(model, wait)

    def report(self, model: str, load: Load) -> None:
        self.loads.append(load)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    (root / "corpus.txt").write_text(CORPUS)
    subprocess.run([str(ML), "init-tiny", "--corpus", str(root / "corpus.txt"), "--out", str(root / "saved"),
                    "--steps", "10", "--vocab-size", "400", "--n-layer", "2", "--n-embd", "32", "--n-head", "2",
                    "--n-positions", "128", "--batch-size", "4", "--block-size", "32"],
                   check=True, capture_output=True, timeout=300)
    return root / "saved"


@pytest.fixture()
def served(tiny_dir: Path, tmp_path: Path) -> Iterator[tuple[openai.OpenAI, ProcessBackends]]:
    backends = ProcessBackends(tiny_dir, tmp_path / "serve.log")
    keys = KeyStore(tmp_path / "keys")
    key = keys.create("t").key
    try:
        with LiveServer(Gateway(backends, keys=keys)) as gw:
            yield openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=120), backends
    finally:
        backends.stop()


def test_a_real_server_started_from_zero_answers_every_openai_call(served: tuple[openai.OpenAI, ProcessBackends]) -> None:
    client, backends = served
    assert [(m.id, m.model_extra["state"]) for m in client.models.list()] == [("tiny", "stopped")]  # type: ignore[index]

    done = client.completions.create(model="tiny", prompt="The quick", max_tokens=4)
    assert backends.starts == 1 and done.usage is not None and done.usage.completion_tokens == 4
    chat = client.chat.completions.create(model="tiny", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content is not None
    pieces = [c.choices[0].text for c in client.completions.create(model="tiny", prompt="A journey", max_tokens=6,
                                                                   stream=True)]
    assert len(pieces) >= 2 and "".join(pieces)
    assert backends.starts == 1
    deadline = time.monotonic() + 5  # the client has the stream's end a moment before the gateway settles
    while backends.loads[-1].outstanding and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backends.loads[-1].outstanding == 0
    with pytest.raises(openai.NotFoundError, match="Known models: tiny"):
        client.completions.create(model="other", prompt="x")
