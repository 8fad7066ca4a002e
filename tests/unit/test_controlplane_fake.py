"""The whole control plane (service + reconciler + executor) against the fake runtime."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from substratus.controlplane.executor import Executor
from substratus.controlplane.layout import Layout
from substratus.controlplane.reconciler import Reconciler
from substratus.controlplane.service import ControlPlane
from substratus.controlplane.store import Store
from substratus.errors import ValidationError
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


@pytest.fixture
def env(tmp_path: Path) -> Any:
    for name, workdir in (("ds", "/dataset"), ("model", "/model")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "Dockerfile").write_text(f"FROM scratch\nWORKDIR {workdir}\n")
    rt = FakeRuntime()
    rt.once = contract_ok
    layout = Layout(tmp_path / "home")
    store = Store(layout.db)
    clock = Clock()
    probes: dict[str, bool] = {}
    rec = Reconciler(store, rt, layout, clock=clock, probe=lambda url: probes.get(url.split("/")[2], False),
                     port_finder=iter(range(20000, 30000)).__next__, executor=Executor(rt, workers=0))
    cp = ControlPlane(store, rt, layout, rec)

    class Env:
        pass

    e = Env()
    e.rt, e.cp, e.rec, e.store, e.clock, e.probes, e.tmp = rt, cp, rec, store, clock, probes, tmp_path
    return e


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


def apply(e: Any, text: str = MANIFEST) -> list[dict[str, str]]:
    f = e.tmp / "m.yaml"
    f.write_text(text)
    return e.cp.apply(load_path(f))


def status(e: Any, kind: str, name: str) -> dict[str, Any]:
    rec = e.store.get(kind, "default", name)
    return rec.status


def reason(e: Any, kind: str, name: str) -> str:
    return next(c["reason"] for c in status(e, kind, name)["conditions"] if c["type"] == "Ready")


def finish_jobs(e: Any, code: int = 0) -> None:
    """Make every running load/train container exit, writing what the real scripts would."""
    for c in list(e.rt.items.values()):
        if not c.state.running or c.state.labels.get("substratus.ai/role") not in ("load", "train"):
            continue
        if code == 0:
            for m in c.spec.mounts:
                if m.target == "/data" and not m.read_only:
                    Path(m.source, c.spec.env["LOAD_DATA_PATH"].removeprefix("/data/")).write_text('{"text":"x"}\n')
                if m.target == "/model/trained":
                    Path(m.source, "weights.bin").write_text("w")
        e.rt.exit(c.spec.name, code, "job output line")


def settle(e: Any, passes: int = 12) -> None:
    for _ in range(passes):
        e.rec.reconcile_all()
        finish_jobs(e)


def test_full_pipeline_becomes_ready(env: Any) -> None:
    results = apply(env)
    assert [r["result"] for r in results] == ["created"] * 4
    settle(env)
    server = env.rt.items[server_name(env)]
    env.probes[f"127.0.0.1:{server.spec.ports[8080]}"] = True
    env.rec.reconcile_all()
    for kind, name in (("Dataset", "ds"), ("Model", "base"), ("Model", "tuned"), ("ModelServer", "tuned")):
        assert status(env, kind, name)["ready"], (kind, name, status(env, kind, name))
    tuned = status(env, "Model", "tuned")["containerImage"]
    assert server.spec.image == tuned and "trained-" in tuned
    assert status(env, "ModelServer", "tuned")["url"] == f"http://127.0.0.1:{server.spec.ports[8080]}"


def test_reapplying_unchanged_does_nothing(env: Any) -> None:
    apply(env)
    settle(env)
    builds = [c for c in env.rt.calls if c[0] == "build"]
    assert [r["result"] for r in apply(env)] == ["unchanged"] * 4
    settle(env)
    assert [c for c in env.rt.calls if c[0] == "build"] == builds


def test_changed_source_rebuilds_retrains_and_rolls_the_server(env: Any) -> None:
    apply(env)
    settle(env)
    server = env.rt.items[server_name(env)]
    env.probes[f"127.0.0.1:{server.spec.ports[8080]}"] = True
    settle(env, 2)
    before = status(env, "Model", "tuned")["containerImage"]
    (env.tmp / "model" / "serve.sh").write_text("#!/bin/sh\n")
    results = {r["name"] + r["kind"]: r["result"] for r in apply(env)}
    assert results["baseModel"] == "configured" and results["dsDataset"] == "unchanged"
    settle(env)
    after = status(env, "Model", "tuned")["containerImage"]
    assert after != before
    assert env.rt.items[server_name(env)].spec.image == after


def test_failed_training_reports_log_tail_and_reapply_retries(env: Any) -> None:
    apply(env)
    for _ in range(6):
        env.rec.reconcile_all()
        for c in list(env.rt.items.values()):
            role = c.state.labels.get("substratus.ai/role")
            if c.state.running and role == "load":
                finish_jobs(env)
            elif c.state.running and role == "train":
                env.rt.exit(c.spec.name, 2, "CUDA out of memory")
    assert reason(env, "Model", "tuned") == "TrainFailed"
    msg = next(c["message"] for c in status(env, "Model", "tuned")["conditions"] if c["type"] == "Ready")
    assert "exited with code 2" in msg and "CUDA out of memory" in msg
    assert reason(env, "ModelServer", "tuned") == "DependencyFailed"
    assert {r["name"] + r["kind"]: r["result"] for r in apply(env)}["tunedModel"] == "retried"
    settle(env)
    assert status(env, "Model", "tuned")["ready"]


def test_contract_violation_is_a_failed_condition_naming_the_clause(env: Any) -> None:
    (env.tmp / "model" / "Dockerfile").write_text("FROM scratch\nWORKDIR /app\n")
    apply(env)
    settle(env, 3)
    assert reason(env, "Model", "base") == "ContractViolation"
    msg = next(c["message"] for c in status(env, "Model", "base")["conditions"] if c["type"] == "Ready")
    assert "working directory is /model" in msg and "WORKDIR /model" in msg


def test_empty_training_output_fails(env: Any) -> None:
    apply(env)
    for _ in range(6):
        env.rec.reconcile_all()
        for c in list(env.rt.items.values()):
            if c.state.running and c.state.labels.get("substratus.ai/role") == "load":
                finish_jobs(env)
            elif c.state.running and c.state.labels.get("substratus.ai/role") == "train":
                env.rt.exit(c.spec.name, 0, "done, saved nothing")
    msg = next(c["message"] for c in status(env, "Model", "tuned")["conditions"] if c["type"] == "Ready")
    assert "/model/trained empty" in msg


def test_reference_to_missing_dataset_stores_nothing(env: Any) -> None:
    text = MANIFEST.replace("datasetName: ds", "datasetName: nope")
    with pytest.raises(ValidationError) as e:
        apply(env, text)
    assert "spec.training.datasetName" in str(e.value) and "'nope' does not exist" in str(e.value)
    assert env.store.records() == []


def test_missing_dockerfile_stores_nothing(env: Any) -> None:
    (env.tmp / "ds" / "Dockerfile").unlink()
    with pytest.raises(ValidationError) as e:
        apply(env)
    assert "spec.source.dir" in str(e.value) and "no Dockerfile" in str(e.value)
    assert env.store.records() == []


def test_delete_removes_containers(env: Any) -> None:
    apply(env)
    settle(env)
    assert server_name(env) in env.rt.items
    out = env.cp.delete("ModelServer", "default", "tuned")
    assert out["containers"] == [server_name(env)]
    assert "sub-modelserver-default-tuned-server" not in env.rt.items
    assert env.store.get("ModelServer", "default", "tuned") is None


def test_restart_adopts_running_containers(env: Any) -> None:
    apply(env)
    settle(env)
    started = [c for c in env.rt.calls if c[0] == "run"]
    fresh = Reconciler(env.store, env.rt, env.rec.layout, clock=env.clock, probe=lambda url: True,
                       executor=Executor(env.rt, workers=0))
    fresh.reconcile_all()
    assert [c for c in env.rt.calls if c[0] == "run"] == started  # nothing started twice
    assert env.store.get("ModelServer", "default", "tuned").status["ready"]


def server_name(e: Any) -> str:
    return f"sub-{e.rec.layout.instance}-modelserver-default-tuned-server"


def test_container_that_cannot_start_is_a_failed_condition(env: Any) -> None:
    from substratus.errors import EngineError

    def refuse(spec: RunSpec) -> Any:
        raise EngineError("Error: unresolvable CDI devices nvidia.com/gpu=all")

    apply(env)
    settle(env)
    env.rt.remove(server_name(env))
    env.rt.run = refuse
    env.rec.reconcile_all()
    env.rec.reconcile_all()
    assert reason(env, "ModelServer", "tuned") == "ServeFailed"
    msg = next(c["message"] for c in status(env, "ModelServer", "tuned")["conditions"] if c["type"] == "Ready")
    assert "could not start" in msg and "CDI" in msg
