"""What the containers of the pipeline do on the emulated cluster, and what they leave behind.

`PipelineControllers` are the simulated controllers (kubelet.py) with the effects
the real containers would have, so the operator sees a cluster that behaves:

    builder pods      BuildKit pushed the image: it appears in the test registry with the
                      config a build of a contract Dockerfile has (WORKDIR /model or /dataset)
    check pods        `command -v` finds the contract's scripts (the check pod's output)
    load/train pods   the script wrote its outputs and the `sync-artifacts` sidecar uploaded
                      them: the data file at LOAD_DATA_PATH, a file in /model/trained, a
                      progress.jsonl in logs/, written to the artifact store (moto's S3) at
                      the keys of the sidecar's --map arguments
    servers, notebooks  keep running and are ready (the readinessProbe passes)

A test makes a container fail by name (`fail`: object name -> (exit code, log lines)).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import PurePosixPath
from typing import Any

from substratus.artifacts.store import ArtifactStore
from tests.kubernetes.kubelet import Controllers, Outcome, default_script
from tests.kubernetes.registry import Registry

ROLE, KIND, NAME = "substratus.ai/role", "substratus.ai/kind", "substratus.ai/name"
IMAGE_REF = "substratus.ai/image-ref"
DATA = [{"text": "To be, or not to be, that is the question."}, {"text": "All the world's a stage."}]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env") or [] if "value" in e}


class PipelineControllers(Controllers):
    def __init__(self, store: ArtifactStore, registry: Registry) -> None:
        super().__init__(script=self.decide)
        self.store, self.registry = store, registry
        self.fail: dict[str, tuple[int, list[str]]] = {}    # object name -> (exit code, logs) of its job/build
        self.ran: dict[tuple[str, str], dict[str, Any]] = {}  # (role, object name) -> the last pod run for it

    # -- what each container does ----------------------------------------------------------------
    def decide(self, pod: dict[str, Any], container: dict[str, Any]) -> Outcome:
        labels = pod["metadata"].get("labels") or {}
        role, name = labels.get(ROLE, "once"), labels.get(NAME, "")
        self.ran[(role, name)] = pod
        if role == "once":
            return Outcome(exit_code=0, logs=self.check_output(container))
        if container["name"] == "buildkit":
            code, logs = self.fail.get(f"build:{name}", (0, ["#1 [internal] load build definition from Dockerfile",
                                                             "#9 pushing layers done"]))
            return Outcome(exit_code=code, logs=logs)
        if role == "server" and name in self.fail:  # serve.sh exits: the kubelet restarts it, with backoff
            code, logs = self.fail[name]
            return Outcome(exit_code=code, logs=logs)
        if role in ("load", "train") and container["name"] == "main":
            code, logs = self.fail.get(name, (0, [f"{role}.sh: starting", f"{role}.sh: done"]))
            return Outcome(exit_code=code, logs=logs)
        return default_script(pod, container)

    @staticmethod
    def check_output(container: dict[str, Any]) -> list[str]:
        """What the contract check's `sh -c` prints in a contract image: every script is there."""
        probe = " ".join(container.get("args") or [])
        return [f"found {s} /usr/local/bin/{s}" for s in re.findall(r"command -v (\S+)\)", probe)]

    # -- what finishing leaves behind ------------------------------------------------------------
    async def _finish(self, pod: dict[str, Any], phase: str, init: list[dict[str, Any]],
                      main: list[dict[str, Any]], reason: str = "") -> None:
        if phase == "Succeeded":
            await asyncio.to_thread(self.effects, pod)
        await super()._finish(pod, phase, init, main, reason)

    def effects(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        if IMAGE_REF in (meta.get("annotations") or {}):
            workdir = "/dataset" if meta["labels"].get(KIND) == "Dataset" else "/model"
            self.registry.push(meta["annotations"][IMAGE_REF], {"WorkingDir": workdir, "Labels": {}})
            return
        sidecar = next((c for c in pod["spec"].get("initContainers", []) if c["name"] == "sync-artifacts"), None)
        if sidecar is not None:
            self.upload(pod, sidecar)

    def upload(self, pod: dict[str, Any], sidecar: dict[str, Any]) -> None:
        """The outputs the script wrote, uploaded as the sidecar would: `--map PATH=KEY` per volume."""
        main = pod["spec"]["containers"][0]
        mounted = {m["name"]: m["mountPath"] for m in main.get("volumeMounts", [])}
        staged = {m["mountPath"]: m["name"] for m in sidecar.get("volumeMounts", [])}
        args = sidecar["args"]
        for path, key in (a.split("=", 1) for a in args[args.index("--map"):] if "=" in a):
            target = mounted.get(staged.get(path, ""), "")
            for filename, data in self.written(main, target).items():
                self.store.write_bytes(PurePosixPath(key) / filename, data)

    @staticmethod
    def written(main: dict[str, Any], target: str) -> dict[str, bytes]:
        env = env_of(main)
        if target == "/data" and "LOAD_DATA_PATH" in env:
            lines = "".join(json.dumps(r) + "\n" for r in DATA)
            return {PurePosixPath(env["LOAD_DATA_PATH"]).name: lines.encode()}
        if target == "/model/trained":
            return {"model.txt": b"trained weights\n"}
        if target.endswith("/logs"):
            points = [{"step": s, "total_steps": 4, "epoch": 1, "loss": 2.0 / s, "time": 1000 + s} for s in (1, 2, 3, 4)]
            return {"progress.jsonl": "".join(json.dumps(p) + "\n" for p in points).encode()}
        return {}
