"""The controllers a real cluster runs, small and level-based, for the emulated cluster.

    job controller         a pod per Job (backoffLimit respected), Job status and
                           conditions (Complete / Failed) as batch/v1 writes them;
                           suspend deletes the active pod
    deployment controller  pods of the current template (pod-template-hash), rolling
                           or recreating on a template change, status with
                           observed generation and ready/available/updated replicas
                           (no ReplicaSet objects: pods are owned by the Deployment)
    kubelet                runs pods: what each container does comes from a `Script`
                           the test chooses (exit code, log lines, readiness, delay);
                           writes phase, containerStatuses and the Ready condition
    garbage collector      deletes objects whose ownerReferences point at nothing

Every change goes through the API server over HTTP (PATCH .../status, POST,
DELETE), so watchers see the same events as on a cluster. The controllers read
the server's store directly, as real ones read their informer caches.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import aiohttp

from tests.kubernetes.cluster import ApiServer, now


@dataclass
class Outcome:
    """What one container does once started."""

    exit_code: Optional[int] = 0       # None: keeps running (a server)
    logs: list[str] = field(default_factory=list)
    ready: bool = True                 # for running containers: the readiness probe passes
    after: float = 0.0                 # seconds until it exits / becomes ready


Script = Callable[[dict[str, Any], dict[str, Any]], Outcome]


def default_script(pod: dict[str, Any], container: dict[str, Any]) -> Outcome:
    """Jobs and one-off pods succeed; everything that restarts keeps running and is ready."""
    if pod["spec"].get("restartPolicy", "Always") == "Always" or container.get("restartPolicy") == "Always":
        return Outcome(exit_code=None, logs=[f"{container['name']}: started"])
    return Outcome(exit_code=0, logs=[f"{container['name']}: done"])


def template_hash(template: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(o.get("uid") == uid for o in obj.get("metadata", {}).get("ownerReferences") or [])


class Controllers:
    def __init__(self, script: Script = default_script, tick: float = 0.05) -> None:
        self.script = script
        self.tick = tick
        self.started: dict[str, float] = {}          # pod uid -> when the kubelet started it
        self.outcomes: dict[tuple[str, str], Outcome] = {}
        self.start_stamps: dict[str, str] = {}
        self.errors: list[str] = []
        self.server: Optional[ApiServer] = None
        self.http: Optional[aiohttp.ClientSession] = None

    async def run(self, server: ApiServer, url: str) -> None:
        self.server = server
        async with aiohttp.ClientSession(base_url=url) as http:
            self.http = http
            while True:
                for step in (self.jobs, self.deployments, self.kubelet, self.collect_garbage):
                    try:
                        await step()
                    except Exception as err:  # noqa: BLE001 - a broken tick is recorded, the loop goes on
                        self.errors.append(f"{step.__name__}: {type(err).__name__}: {err}")
                await asyncio.sleep(self.tick)

    # -- HTTP ---------------------------------------------------------------------------------
    async def _send(self, method: str, path: str, body: Any = None) -> None:
        assert self.http is not None
        headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
        async with self.http.request(method, path, json=body, headers=headers) as resp:
            if resp.status >= 400 and resp.status != 404:
                raise RuntimeError(f"{method} {path} -> {resp.status}: {(await resp.text())[:200]}")

    async def patch_status(self, base: str, obj: dict[str, Any], status: dict[str, Any]) -> None:
        meta = obj["metadata"]
        await self._send("PATCH", f"{base}/namespaces/{meta['namespace']}/{_plural(obj)}/{meta['name']}/status",
                         {"status": status})

    async def create_pod(self, owner: dict[str, Any], template: dict[str, Any], labels: dict[str, str]) -> None:
        meta = owner["metadata"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{meta['name'][:50]}-{uuid.uuid4().hex[:5]}", "namespace": meta["namespace"],
                            "labels": {**(template.get("metadata", {}).get("labels") or {}), **labels},
                            "annotations": template.get("metadata", {}).get("annotations") or {},
                            "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                                 "name": meta["name"], "uid": meta["uid"], "controller": True,
                                                 "blockOwnerDeletion": True}]},
               "spec": template["spec"]}
        await self._send("POST", f"/api/v1/namespaces/{meta['namespace']}/pods", pod)

    async def delete(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        base = "/api/v1" if obj["apiVersion"] == "v1" else f"/apis/{obj['apiVersion']}"
        ns = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
        await self._send("DELETE", f"{base}{ns}/{_plural(obj)}/{meta['name']}")

    def pods_of(self, uid: str) -> list[dict[str, Any]]:
        assert self.server is not None
        return sorted((p for p in self.server.live("v1/pods") if owned_by(p, uid)),
                      key=lambda p: p["metadata"]["creationTimestamp"] + p["metadata"]["resourceVersion"].zfill(12))

    # -- job controller -----------------------------------------------------------------------
    async def jobs(self) -> None:
        assert self.server is not None
        for job in self.server.live("batch/v1/jobs"):
            status = job.get("status") or {}
            if any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in status.get("conditions", [])):
                continue
            pods = self.pods_of(job["metadata"]["uid"])
            if job["spec"].get("suspend"):
                for pod in pods:
                    await self.delete(pod)
                if status.get("active"):
                    await self.patch_status("/apis/batch/v1", job, {"active": 0, "conditions": [
                        {"type": "Suspended", "status": "True", "reason": "JobSuspended", "lastTransitionTime": now()}]})
                continue
            await self._job_step(job, pods, status)

    async def _job_step(self, job: dict[str, Any], pods: list[dict[str, Any]], status: dict[str, Any]) -> None:
        phases = [p.get("status", {}).get("phase") for p in pods]
        failed, succeeded = phases.count("Failed"), phases.count("Succeeded")
        active = len(pods) - failed - succeeded
        if succeeded:
            await self.patch_status("/apis/batch/v1", job, {
                "active": 0, "succeeded": 1, "completionTime": now(), "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                     "lastTransitionTime": now()},
                    {"type": "Complete", "status": "True", "reason": "CompletionsReached", "lastTransitionTime": now()}]})
        elif failed > int(job["spec"].get("backoffLimit", 6)):
            await self.patch_status("/apis/batch/v1", job, {
                "active": 0, "failed": failed, "conditions": [
                    {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                     "lastTransitionTime": now()},
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                     "message": "Job has reached the specified backoff limit", "lastTransitionTime": now()}]})
        elif active == 0:
            labels = {"batch.kubernetes.io/job-name": job["metadata"]["name"], "job-name": job["metadata"]["name"],
                      "batch.kubernetes.io/controller-uid": job["metadata"]["uid"]}
            await self.create_pod(job, job["spec"]["template"], labels)
            await self.patch_status("/apis/batch/v1", job, {"active": 1, "failed": failed,
                                                            "startTime": status.get("startTime") or now()})

    # -- deployment controller ----------------------------------------------------------------
    async def deployments(self) -> None:
        assert self.server is not None
        for dep in self.server.live("apps/v1/deployments"):
            spec = dep["spec"]
            want_hash = template_hash(spec["template"])
            pods = [p for p in self.pods_of(dep["metadata"]["uid"]) if not p["metadata"].get("deletionTimestamp")]
            current = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == want_hash]
            old = [p for p in pods if p not in current]
            replicas = int(spec.get("replicas", 1))
            recreate = spec.get("strategy", {}).get("type") == "Recreate"
            ready = [p for p in current if _pod_ready(p)]
            if old and (recreate or len(ready) >= replicas or replicas == 0):
                for pod in old:
                    await self.delete(pod)
            elif len(current) < replicas and not (recreate and old):
                await self.create_pod(dep, spec["template"], {"pod-template-hash": want_hash})
            for pod in current[replicas:]:
                await self.delete(pod)
            await self._deployment_status(dep, pods, current, ready, replicas)

    async def _deployment_status(self, dep: dict[str, Any], pods: list[dict[str, Any]], current: list[dict[str, Any]],
                                 ready: list[dict[str, Any]], replicas: int) -> None:
        available = len(ready) >= replicas
        status = {
            "observedGeneration": dep["metadata"].get("generation", 1), "replicas": len(pods),
            "updatedReplicas": len(current), "readyReplicas": len([p for p in pods if _pod_ready(p)]),
            "availableReplicas": len(ready), "unavailableReplicas": max(0, replicas - len(ready)),
            "conditions": [
                {"type": "Available", "status": "True" if available else "False",
                 "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable"},
                {"type": "Progressing", "status": "True",
                 "reason": "NewReplicaSetAvailable" if available and len(pods) == len(current) else "ReplicaSetUpdated"},
            ],
        }
        if {k: v for k, v in (dep.get("status") or {}).items() if k in status} != status:
            await self.patch_status("/apis/apps/v1", dep, status)

    # -- kubelet ------------------------------------------------------------------------------
    async def kubelet(self) -> None:
        assert self.server is not None
        for pod in self.server.live("v1/pods"):
            if pod["metadata"].get("deletionTimestamp"):
                continue
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                continue
            await self._run_pod(pod)

    def started_at(self, uid: str) -> str:
        """When the kubelet started the pod's containers: fixed, so a running pod's status is patched only
        when something changes (as a kubelet does), not at every tick."""
        return self.start_stamps.setdefault(uid, now())

    def _outcome(self, pod: dict[str, Any], container: dict[str, Any]) -> Outcome:
        key = (pod["metadata"]["uid"], container["name"])
        if key not in self.outcomes:
            outcome = self.script(pod, container)
            self.outcomes[key] = outcome
            assert self.server is not None
            log_key = (pod["metadata"]["namespace"], pod["metadata"]["name"], container["name"])
            self.server.pod_logs.setdefault(log_key, []).extend(outcome.logs)
        return self.outcomes[key]

    async def _run_pod(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        started = self.started.setdefault(uid, time.monotonic())
        elapsed = time.monotonic() - started
        init_statuses, main_statuses = [], []
        for c in pod["spec"].get("initContainers", []):
            outcome = self._outcome(pod, c)
            sidecar = c.get("restartPolicy") == "Always"
            if not sidecar and outcome.exit_code not in (None, 0):
                return await self._finish(pod, "Failed", [_terminated(c, outcome.exit_code)], [], "Init:Error")
            init_statuses.append(_running(c, True, self.started_at(uid)) if sidecar else _terminated(c, 0))
        terminal = True
        for c in pod["spec"]["containers"]:
            outcome = self._outcome(pod, c)
            if outcome.exit_code is not None and elapsed >= outcome.after:
                main_statuses.append(_terminated(c, outcome.exit_code))
            else:
                terminal = False
                main_statuses.append(_running(c, outcome.ready and elapsed >= outcome.after, self.started_at(uid)))
        if terminal and pod["spec"].get("restartPolicy", "Always") != "Always":
            codes = [s["state"]["terminated"]["exitCode"] for s in main_statuses]
            init_done = [_terminated({"name": s["name"], "image": s["image"]}, 0) for s in init_statuses]
            return await self._finish(pod, "Succeeded" if not any(codes) else "Failed", init_done, main_statuses)
        if pod["spec"].get("restartPolicy", "Always") == "Always":  # each exited container is restarted with backoff
            main_statuses = [_crashloop(c, s) if "terminated" in s["state"] else s
                             for c, s in zip(pod["spec"]["containers"], main_statuses)]
        ready = all(s.get("ready") for s in main_statuses)
        status = {"phase": "Running", "startTime": pod.get("status", {}).get("startTime") or now(),
                  "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                  "initContainerStatuses": init_statuses, "containerStatuses": main_statuses}
        if {k: pod.get("status", {}).get(k) for k in status if k != "startTime"} != \
                {k: v for k, v in status.items() if k != "startTime"}:
            await self.patch_status("/api/v1", pod, status)

    async def _finish(self, pod: dict[str, Any], phase: str, init: list[dict[str, Any]],
                      main: list[dict[str, Any]], reason: str = "") -> None:
        assert self.server is not None
        for c in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
            self.server.finished_logs.add((pod["metadata"]["namespace"], pod["metadata"]["name"], c["name"]))
        status: dict[str, Any] = {"phase": phase, "conditions": [{"type": "Ready", "status": "False"}],
                                  "initContainerStatuses": init, "containerStatuses": main,
                                  "startTime": pod.get("status", {}).get("startTime") or now()}
        if reason:
            status["reason"] = reason
        await self.patch_status("/api/v1", pod, status)

    # -- garbage collector --------------------------------------------------------------------
    async def collect_garbage(self) -> None:
        assert self.server is not None
        objects = self.server.all_live()
        uids = {o["metadata"].get("uid") for o in objects}
        for obj in objects:
            owners = obj["metadata"].get("ownerReferences") or []
            if owners and not any(o.get("uid") in uids for o in owners):
                await self.delete(obj)


def _plural(obj: dict[str, Any]) -> str:
    return {"Pod": "pods", "Job": "jobs", "Deployment": "deployments", "Service": "services", "Secret": "secrets",
            "ConfigMap": "configmaps", "ReplicaSet": "replicasets"}.get(obj["kind"], obj["kind"].lower() + "s")


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def _running(c: dict[str, Any], ready: bool, started_at: str) -> dict[str, Any]:
    return {"name": c["name"], "image": c.get("image", ""), "ready": ready, "restartCount": 0,
            "started": True, "state": {"running": {"startedAt": started_at}}}


def _terminated(c: dict[str, Any], code: int) -> dict[str, Any]:
    return {"name": c["name"], "image": c.get("image", ""), "ready": False, "restartCount": 0, "started": False,
            "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                     "finishedAt": now()}}}


def _crashloop(c: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    return {"name": c["name"], "image": c.get("image", ""), "ready": False, "restartCount": 1, "started": False,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": s["state"]["terminated"]}}
