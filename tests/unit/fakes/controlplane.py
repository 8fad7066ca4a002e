"""A whole local control plane (service + controller + executor) on the fake runtime, run
synchronously: no threads, a fake clock, engine events pumped by hand. Used by the unit tests
of the local backend, the API and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from substratus.local.controller import Controller
from substratus.local.service import ControlPlane
from substratus.local.store import Store
from substratus.reconcile.layout import Layout
from substratus.resources.manifest import load_path
from substratus.runtimes.base import Completed, RunSpec
from substratus.runtimes.fake import FakeRuntime


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def contract_ok(spec: RunSpec) -> Completed:
    """Answer the contract probe: every script asked for is found."""
    probe = spec.command[0]
    names = [w for w in probe.replace(";", " ").split() if w.endswith(".sh") and "$" not in w]
    return Completed(0, "\n".join(f"found {n} /usr/local/bin/{n}" for n in dict.fromkeys(names)))


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        for name, workdir in (("ds", "/dataset"), ("model", "/model")):
            (tmp / name).mkdir(exist_ok=True)
            (tmp / name / "Dockerfile").write_text(f"FROM scratch\nWORKDIR {workdir}\n")
        self.rt = FakeRuntime()
        self.rt.once = contract_ok
        self.layout = Layout(tmp / "home")
        self.store = Store(self.layout.db)
        self.clock = Clock()
        self.probes: dict[int, bool] = {}
        self.ports = iter(range(20000, 30000))
        self.ctl = self.controller()
        self.cp = ControlPlane(self.store, self.rt, self.layout, self.ctl)

    def controller(self) -> Controller:
        ctl = Controller(self.store, self.rt, self.layout, clock=self.clock,
                         prober=lambda role, port: self.probes.get(port, False), workers=0, executor_workers=0,
                         port_finder=lambda: next(self.ports), token_maker=lambda: "t" * 32)
        ctl.observer.containers.relist()
        self.events = self.rt.events(ctl.observer.containers.selector)
        return ctl

    def drain(self, limit: int = 500) -> int:
        """Process everything due now (engine events included); returns the passes made."""
        passes = 0
        while passes < limit:
            for event in self.events.pending():
                self.ctl.on_engine_event(event)
            key = self.ctl.queue.get(block=False)
            if key is None:
                return passes
            try:
                self.ctl.process(key)
            finally:
                self.ctl.queue.done(key)
            passes += 1
        raise AssertionError("the queue never settled")

    def advance(self, seconds: float) -> None:
        self.clock.t += seconds
        self.drain()




MANIFEST = """
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {name: ds}
spec: {filename: data.jsonl, source: {dir: ds}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: base}
spec: {source: {dir: model}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {name: tuned}
spec: {source: {modelName: base}, training: {datasetName: ds, params: {epochs: 2}}}
---
apiVersion: substratus.ai/v1
kind: Server
metadata: {name: tuned}
spec: {modelName: tuned}
"""


def apply(e: Env, text: str = MANIFEST) -> list[dict[str, str]]:
    f = e.tmp / "m.yaml"
    f.write_text(text)
    results = e.cp.apply(load_path(f))
    e.drain()
    return results


def status(e: Env, kind: str, name: str) -> dict[str, Any]:
    rec = e.store.get(kind, "default", name)
    assert rec is not None, (kind, name)
    return rec.status


def ready_condition(e: Env, kind: str, name: str) -> dict[str, Any]:
    return next(c for c in status(e, kind, name)["conditions"] if c["type"] == "Ready")


def reason(e: Env, kind: str, name: str) -> str:
    return str(ready_condition(e, kind, name)["reason"])


def finish_jobs(e: Env, code: int = 0, output: str = "job output line", role: str = "") -> None:
    """Make running load/train containers exit, writing what the real scripts would."""
    for c in list(e.rt.items.values()):
        r = c.state.labels.get("substratus.ai/role")
        if not c.state.running or r not in ("load", "train") or (role and r != role):
            continue
        if code == 0:
            for m in c.spec.mounts:
                if m.target == "/data" and not m.read_only:
                    Path(m.source, c.spec.env["LOAD_DATA_PATH"].removeprefix("/data/")).write_text('{"text":"x"}\n')
                if m.target == "/model/trained" and "empty" not in output:
                    Path(m.source, "weights.bin").write_text("w")
        e.rt.exit(c.spec.name, code, output)
    e.drain()


def settle(e: Env, rounds: int = 4) -> None:
    for _ in range(rounds):
        e.drain()
        finish_jobs(e)


def server(e: Env, name: str = "tuned") -> Any:
    return next(c for c in e.rt.items.values() if c.state.labels.get("substratus.ai/role") == "server"
                and c.state.labels.get("substratus.ai/name") == name)


def serve_ready(e: Env) -> int:
    port = server(e).spec.ports[8080]
    e.probes[port] = True
    e.advance(0.2)
    return int(port)


# ---- the pipeline ------------------------------------------------------------------------------
