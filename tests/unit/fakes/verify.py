"""Fakes for `sub verify`: a runtime whose images keep the contract, and a fake model server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Optional, Union

from substratus.runtimes.base import Completed, RunSpec
from substratus.runtimes.fake import FakeRuntime
from substratus.verify import Deps, Options, Outcome, Target
from substratus.verify.probe import Clock, HttpAnswer, ProbeError

Route = Union[HttpAnswer, Exception, Callable[[Optional[bytes]], HttpAnswer]]


class ContractRuntime(FakeRuntime):
    def __init__(self) -> None:
        super().__init__()
        self.scripts = ["serve.sh", "train.sh", "notebook.sh", "load.sh"]
        self.saved = ["model.bin"]
        self.train_exit = 0
        self.train_files = {"model.bin": "weights"}
        self.load_to: Optional[str] = None  # None: exactly LOAD_DATA_PATH
        self.load_text = '{"text": "hello"}\n'
        self.once = self.answer
        self.once_specs: list[RunSpec] = []

    def answer(self, spec: RunSpec) -> Completed:
        self.once_specs.append(spec)
        script = " ".join(spec.command)
        if spec.entrypoint == ["sh", "-c"] and "command -v" in script:
            return Completed(0, "\n".join(f"found {s} /usr/local/bin/{s}" for s in self.scripts) + "\n")
        if spec.entrypoint == ["sh", "-c"] and "/model/saved" in script:
            return Completed(0, "".join(f"{f}\n" for f in self.saved) + f"entries={len(self.saved)}\n")
        mounts = {m.target: Path(m.source) for m in spec.mounts}
        if spec.command == ["train.sh"]:
            for name, text in self.train_files.items():
                (mounts["/model/trained"] / name).write_text(text)
            return Completed(self.train_exit, "epoch 1/1 loss 2.31\n" if not self.train_exit else "Traceback\nOOM\n")
        if spec.command == ["load.sh"]:
            name = self.load_to or spec.env["LOAD_DATA_PATH"].removeprefix("/data/")
            (mounts["/data"] / name).write_text(self.load_text)
            return Completed(0, "loaded 1 record\n")
        return Completed(127, f"unexpected command {script}")


def generate_ok(body: Optional[bytes]) -> HttpAnswer:
    try:
        prompt = json.loads(body or b"")["prompt"]
    except (ValueError, KeyError):
        return HttpAnswer(422, b'{"detail": "bad body"}')
    return HttpAnswer(200, json.dumps({"generation": prompt + " and so on"}).encode())


class FakeServer:
    """Answers requests by (method, path); unknown routes get 404."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {
            ("GET", "/"): HttpAnswer(404, b""),
            ("GET", "/docs"): HttpAnswer(200, b"<html>docs</html>", {"content-type": "text/html"}),
            ("POST", "/generate"): generate_ok,
            ("GET", "/openapi.json"): HttpAnswer(200, b'{"openapi": "3.0.0", "paths": {}}'),
        }
        self.calls: list[tuple[str, str]] = []

    def request(self, method: str, url: str, *, body: Optional[bytes] = None,
                headers: Optional[dict[str, str]] = None, timeout: float = 10) -> HttpAnswer:
        path = "/" + url.split("/", 3)[3]
        self.calls.append((method, path))
        route = self.routes.get((method, path), HttpAnswer(404, b""))
        if isinstance(route, Exception):
            raise route
        return route(body) if callable(route) else route


class FakeClock(Clock):
    def __init__(self) -> None:
        self.t = 0.0
        super().__init__(now=lambda: self.t, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.t += seconds


def refused(_: Optional[bytes] = None) -> HttpAnswer:
    raise ProbeError("ConnectError: connection refused")


def model_dir(root: Path, workdir: str = "/model") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(f"FROM scratch\nWORKDIR {workdir}\n")
    return root


def deps(server: Optional[FakeServer] = None, fuzz: Optional[Callable[..., object]] = None) -> Deps:
    return Deps(probe=server or FakeServer(), fuzzer=fuzz or (lambda *a: Outcome(True, "fuzzed: no 5xx")),  # type: ignore[arg-type]
                clock=FakeClock(), run_id="t1")


def model_target(root: Path) -> Target:
    return Target(kind="Model", source=str(root))


FAST = Options(serve_timeout=5, notebook_timeout=5)

