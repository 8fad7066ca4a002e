"""Figure 2: the control plane killed with SIGKILL at each stage of the busybox contract pipeline
(dataset -> model -> fine-tuned model -> server) recovers: after a restart every pipeline
reaches Ready, nothing of that instance is orphaned, and no half-written dataset or trained
model is ever marked ready.

Black-box: the daemon's pid comes from $SUBSTRATUS_HOME/controlplane.json, stages are seen
from outside (the daemon's child processes, the engine's containers), and recovery is judged
through `sub` and the engine only. Each trial has its own home (so its own instance label and
a fresh store); all share one namespace, and so the source images the first trial builds
(object images are named `<kind>-<namespace>-<name>`), which keeps the trials lean. load.sh,
train.sh and serve.sh start with a short `sleep` so the kill can land while they run; the two
build trials add a slow step to their own copy of a source, so they really build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import SUB, Sub, cleanup, copy_fixture
from tests.reliability.conftest import containers_of, engine_lines, images_with, instance_of, remove_images

PARAMS = {"epochs": 2, "batchSize": 4, "dataLimit": 60}
SLOW = 2  # seconds of `sleep` before load.sh, train.sh and serve.sh, so a trial can catch them


@dataclass(frozen=True)
class Trial:
    stage: str
    what: str = ""       # for people


TRIALS = [
    Trial("apply", "right after `sub apply` stored the objects, before anything ran"),
    Trial("build", "during the dataset image build"),
    Trial("contract-check", "during a contract probe (`run --rm` of a fresh image)"),
    Trial("load", "while load.sh runs"),
    Trial("build-model", "during the base model's image build"),
    Trial("train", "while train.sh runs"),
    Trial("bake", "while the trained image is built (FROM base + /model/trained)"),
    Trial("serve-start", "while the server container starts"),
    Trial("serving", "with everything Ready (the server must be adopted, not duplicated)"),
    Trial("delete", "during `sub delete` of the whole pipeline"),
]


def sleep_first(script: Path) -> None:
    lines = script.read_text().splitlines(keepends=True)
    script.write_text(lines[0] + f"sleep {SLOW}\n" + "".join(lines[1:]))


def own_layers(context: Path, tag: str) -> None:
    """Make every layer of these images this module's own: the engine's storage is shared with
    other builds (other test runs, people), and one of them pruning a cached layer a build is
    using fails it with "layer not known" (podman 4.3), which is no part of what is measured."""
    (context / "owner.txt").write_text(tag + "\n")
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("FROM scratch\n", "FROM scratch\nCOPY owner.txt /owner.txt\n", 1))


@dataclass(frozen=True)
class Sources:
    ns: str
    ds: Path
    model: Path


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, busybox: Path, engine: str) -> Iterator[Sources]:
    """One dataset and one model source for all trials: their images are built by the first trial
    and reused (a trial's home is new, so contract checks, load, train, bake and serve run again);
    the build trials add a step of their own and so build for real."""
    root = tmp_path_factory.mktemp("k9src")
    ns = f"k9-{uuid.uuid4().hex[:6]}"
    ds = copy_fixture("dataset-shell", root / "ds", busybox)
    model = copy_fixture("model-shell", root / "model", busybox)
    for ctx in (ds, model):
        own_layers(ctx, ns)
    for script in (ds / "bin" / "load.sh", model / "bin" / "train.sh", model / "bin" / "serve.sh"):
        sleep_first(script)
    yield Sources(ns, ds, model)
    remove_images(engine, images_with(engine, f"-{ns}-"))


def sources(trial: Trial, shared: Sources, root: Path) -> Sources:
    """The shared sources, or for a build trial a copy whose Dockerfile ends with a slow step."""
    which = {"build": "ds", "build-model": "model"}.get(trial.stage)
    if which is None:
        return shared
    copy = root / which
    shutil.copytree(getattr(shared, which), copy, symlinks=True)
    (copy / "Dockerfile").write_text((copy / "Dockerfile").read_text() + f"RUN sleep {SLOW + 2}\n")
    return Sources(shared.ns, copy if which == "ds" else shared.ds, copy if which == "model" else shared.model)


def manifest(src: Sources) -> str:
    head = f"apiVersion: substratus.ai/v1\nmetadata: {{name: NAME, namespace: {src.ns}}}\n"
    return "---\n".join([
        head.replace("NAME", "sonnets") + f"kind: Dataset\nspec: {{filename: sonnets.jsonl, source: {{dir: {src.ds}}}}}\n",
        head.replace("NAME", "bigram") + f"kind: Model\nspec: {{source: {{dir: {src.model}}}}}\n",
        head.replace("NAME", "tuned") + "kind: Model\nspec: {source: {modelName: bigram}, training: "
        f"{{datasetName: sonnets, params: {json.dumps(PARAMS)}}}}}\n",
        head.replace("NAME", "tuned") + "kind: ModelServer\nspec: {modelName: tuned}\n",
    ])


def children(pid: int) -> list[str]:
    """Command lines of the daemon's direct children."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            if int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1]) != pid:
                continue
            out.append(Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, ValueError, IndexError):
            continue
    return out


class Pipeline:
    def __init__(self, sub: Sub, engine: str, ns: str, manifest: Path) -> None:
        self.sub, self.engine, self.ns, self.manifest = sub, engine, ns, manifest
        self.instance = instance_of(sub.home)

    def pid(self) -> int:
        return int(json.loads((self.sub.home / "controlplane.json").read_text())["pid"])

    def role(self, role: str, running: bool = True) -> bool:
        argv = [self.engine, "ps", "-q", "--filter", f"label=substratus.ai/instance={self.instance}",
                "--filter", f"label=substratus.ai/role={role}"]
        return bool(engine_lines(argv + (["--filter", "status=running"] if running else ["-a"])))

    def caught(self, stage: str) -> Callable[[], bool]:
        """Whether the pipeline is at `stage` right now."""
        def child(*words: str) -> Callable[[], bool]:
            return lambda: any(all(w in c for w in words) for c in children(self.pid()))

        return {
            "build": child(" build ", f"dataset-{self.ns}-sonnets"),
            "build-model": child(" build ", f"model-{self.ns}-bigram:"),
            "contract-check": child(" run ", "--rm"),
            "load": lambda: self.role("load"),
            "train": lambda: self.role("train"),
            "bake": child(" build ", ":trained-"),  # the trained image's tag
            "serve-start": lambda: self.role("server", running=False) and not self.ready("ModelServer", "tuned"),
        }[stage]

    def objects(self) -> dict[str, dict[str, Any]]:
        items = json.loads(self.sub.ok("get", "-n", self.ns, "-o", "json"))["items"]
        return {f"{o['kind']}/{o['metadata']['name']}": o for o in items}

    def ready(self, kind: str, name: str) -> bool:
        o = self.objects().get(f"{kind}/{name}")
        return bool(o and o["status"].get("ready"))

    def kill(self) -> int:
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return pid


def wait_for(cond: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, f"never saw: {what}"
        time.sleep(0.05)


def expected_records(busybox: Path, ds: Path) -> bytes:
    """What load.sh writes, computed on the host with the same awk (busybox)."""
    return subprocess.run([str(busybox), "awk", "-f", str(ds / "src" / "to-jsonl.awk"),
                           str(ds / "src" / "sonnets-1-20.txt")], capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def results(figures: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    done: list[dict[str, Any]] = []
    yield done
    passed = sum(1 for r in done if r["recovered"])
    figures["kill9"] = {"trials": len(done), "recovered": passed, "stages": [r["stage"] for r in done],
                        "summary": f"{passed}/{len(done)} pipelines Ready after SIGKILL + restart at stages "
                                   f"{', '.join(r['stage'] for r in done)}; 0 orphans, no partial output marked ready"}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("trial", TRIALS, ids=[t.stage for t in TRIALS])
def test_kill_nine_then_restart_recovers(trial: Trial, shared: Sources, tmp_path: Path, busybox: Path, engine: str,
                                         results: list[dict[str, Any]]) -> None:
    src = sources(trial, shared, tmp_path)
    m = tmp_path / "pipeline.yaml"
    m.write_text(manifest(src))
    sub = Sub(tmp_path / "home", SUBSTRATUS_READY_TIMEOUT="120")
    pipe = Pipeline(sub, engine, src.ns, m)
    started = time.monotonic()
    own = {"build": f"dataset-{src.ns}-sonnets:", "build-model": f"model-{src.ns}-bigram:"}.get(trial.stage)
    before = set(images_with(engine, f"-{src.ns}-"))
    try:
        killed = run_until_killed(trial, pipe)
        recover_and_check(trial, pipe, killed, expected_records(busybox, src.ds), before)
        results.append({"stage": trial.stage, "recovered": True, "seconds": round(time.monotonic() - started, 1)})
    finally:
        cleanup(sub, engine)
        # This trial's own images: its trained image, and the source image a build trial made.
        made = set(images_with(engine, f"-{src.ns}-")) - before
        remove_images(engine, sorted(t for t in made if f"model-{src.ns}-tuned:" in t or (own and own in t)))


def run_until_killed(trial: Trial, pipe: Pipeline) -> int:
    if trial.stage in ("serving", "delete"):
        proc = pipe.sub("apply", "-f", str(pipe.manifest), "--wait", "--timeout", "400")
        assert proc.returncode == 0, proc.stderr
    if trial.stage == "delete":
        deleting = subprocess.Popen([SUB, "delete", "-f", str(pipe.manifest)], env=pipe.sub.env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        pid = pipe.pid()
        wait_for(lambda: any(" rm " in c for c in children(pid)), 120, "`rm` of a container during delete")
        killed = pipe.kill()
        deleting.communicate(timeout=60)
        return killed
    if trial.stage != "serving":
        pipe.sub.ok("apply", "-f", str(pipe.manifest))
    if trial.stage not in ("apply", "serving"):
        wait_for(pipe.caught(trial.stage), 400, trial.what)
    return pipe.kill()


def recover_and_check(trial: Trial, pipe: Pipeline, killed: int, records: bytes, before: set[str]) -> None:
    if trial.stage == "delete":
        proc = pipe.sub("delete", "-f", str(pipe.manifest), timeout=300)  # starts a new control plane
        assert pipe.pid() != killed
        assert pipe.objects() == {}, proc.stderr
        wait_for(lambda: containers_of(pipe.engine, pipe.instance) == [], 60, "no container left after delete")
        return
    proc = pipe.sub("apply", "-f", str(pipe.manifest), "--wait", "--timeout", "400")
    assert proc.returncode == 0, f"not Ready after the restart:\n{proc.stderr}"
    assert pipe.pid() != killed
    objs = pipe.objects()
    assert all(o["status"]["ready"] for o in objs.values()) and len(objs) == 4
    check_outputs(pipe, objs, records)
    check_no_orphans(pipe, objs, before)


def check_outputs(pipe: Pipeline, objs: dict[str, dict[str, Any]], records: bytes) -> None:
    """The dataset marked ready holds exactly what load.sh writes; the trained model serves, trained."""
    data = Path(objs["Dataset/sonnets"]["status"]["url"].removeprefix("file://"))
    got = data.read_bytes()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(records).hexdigest(), \
        f"the ready dataset is not what load.sh writes ({len(got)} bytes, expected {len(records)})"
    url = objs["ModelServer/tuned"]["status"]["url"]
    out = httpx.post(f"{url}/generate", json={"prompt": "Shall I compare", "max_new_tokens": 4}, timeout=30).json()
    assert out["generation"].startswith("Shall I compare")
    assert all(str(v) in json.dumps(out) for v in PARAMS.values()), f"not the trained model: {out}"


def check_no_orphans(pipe: Pipeline, objs: dict[str, dict[str, Any]], before: set[str]) -> None:
    """Only the server's container runs; every image the trial made is one of its objects' images."""
    wait_for(lambda: len(containers_of(pipe.engine, pipe.instance)) == 1, 60, "only the server container left")
    [name] = containers_of(pipe.engine, pipe.instance)
    assert "-server" in name and pipe.role("server")
    expected = {objs["Dataset/sonnets"]["status"]["containerImage"], objs["Model/bigram"]["status"]["containerImage"],
                objs["Model/tuned"]["status"]["containerImage"]}
    made = set(images_with(pipe.engine, f"-{pipe.ns}-")) - before
    assert made <= expected, f"images made but used by no object: {made - expected}"
    assert expected <= set(images_with(pipe.engine, f"-{pipe.ns}-"))


def test_a_container_whose_object_is_gone_is_removed(tmp_path: Path, engine: str, busybox: Path) -> None:
    """The window a trial cannot aim at: a container whose labels name an object the store no longer
    holds (killed between forgetting an object and removing its container, or a store restored
    from a backup). The control plane must remove it when it starts again. (Before the controller
    rewrite of issue 8 nothing did: this was the one kill -9 gap found.)"""
    sub = Sub(tmp_path / "home")
    instance = instance_of(sub.home)
    image = f"localhost/substratus/k9-orphan:{uuid.uuid4().hex[:8]}"
    ctx = tmp_path / "img"
    ctx.mkdir()
    shutil.copy2(busybox, ctx / "busybox")
    (ctx / "Dockerfile").write_text(f"FROM scratch\nLABEL owner={image}\nCOPY busybox /bin/busybox\n")
    subprocess.run([engine, "build", "-q", "-t", image, str(ctx)], check=True, capture_output=True)
    labels = {"substratus.ai/managed": "true", "substratus.ai/instance": instance, "substratus.ai/kind": "ModelServer",
              "substratus.ai/namespace": "default", "substratus.ai/name": "gone", "substratus.ai/role": "server"}
    argv = [engine, "run", "-d", "--name", f"sub-{instance}-modelserver-default-gone-server"]
    for k, v in labels.items():
        argv += ["--label", f"{k}={v}"]
    subprocess.run(argv + ["--", image, "/bin/busybox", "sleep", "600"], check=True, capture_output=True)
    try:
        sub.ok("up")
        deadline = time.monotonic() + 60  # the first pass queues every owner found; removal waits 5 s for TERM
        while containers_of(engine, instance) and time.monotonic() < deadline:
            time.sleep(1)
        assert containers_of(engine, instance) == [], "a container whose object is gone was left running"
    finally:
        cleanup(sub, engine)
        remove_images(engine, [image])
