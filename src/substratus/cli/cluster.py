"""`sub` against a Kubernetes cluster: the same verbs and output, on the cluster's custom resources.

Chosen by `sub --context NAME ...` (a kubeconfig context) or SUBSTRATUS_BACKEND=kubernetes
(the current context), see `cli.backend`; imported only on that path, so `sub` on the
local control plane never loads the Kubernetes client. The operator does the work; this
client reads and writes Dataset/Model/ModelServer/Notebook resources, uploads `dir`
sources (cluster_apply), and reads logs from the objects' Jobs and Pods and from the
artifact store (build logs, job logs, `logs/` of the newest run).

`watch` (what `sub apply --wait` follows) lists the resources every POLL seconds and
reports what changed: simple, and enough for a person waiting on a build.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any, List, Optional  # List: `list` is a method name in ClusterClient

from substratus.artifacts.layout import ArtifactLayout
from substratus.artifacts.store import ArtifactError, ArtifactStore
from substratus.build import naming
from substratus.cli import cluster_apply
from substratus.errors import ControlPlaneError, NotFoundError, SubstratusError, ValidationError
from substratus.reconcile.core import check_references
from substratus.resources.kinds import KIND_ORDER
from substratus.resources.manifest import parse_objects
from substratus.resources.objectkey import ObjectKey
from substratus.resources.schema import Resource
from substratus.resources.selectors import parse as parse_selector
from substratus.runtimes.base import ContainerState
from substratus.runtimes.kubernetes.client import KubeApi, KubeError
from substratus.runtimes.kubernetes.runtime import CR_VERSION, KubernetesRuntime
from substratus.runtimes.kubernetes.settings import KubeSettings, settings_from_configmap

POLL = 1.0
DELETE_WAIT = 60.0
HIDDEN_META = ("managedFields",)
OPERATOR_NAMESPACE_ENV = "SUBSTRATUS_OPERATOR_NAMESPACE"


def document(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """An object as `sub get` shows it (items of a list response carry no kind of their own)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in HIDDEN_META}
    return {"apiVersion": CR_VERSION, "kind": kind, "metadata": meta, "spec": obj.get("spec") or {},
            "status": obj.get("status") or {}}


class ClusterClient:
    def __init__(self, api: KubeApi, *, operator_namespace: str = "substratus", sleep: Any = time.sleep) -> None:
        self.api, self.operator_namespace, self.sleep = api, operator_namespace, sleep
        self._settings: Optional[KubeSettings] = None

    @classmethod
    def connect(cls, kubeconfig: Optional[str], context: Optional[str]) -> "ClusterClient":
        return cls(KubeApi.connect(kubeconfig, context),
                   operator_namespace=os.environ.get(OPERATOR_NAMESPACE_ENV, "substratus"))

    # -- what the cluster is set up with ---------------------------------------------------------
    def settings(self) -> KubeSettings:
        """The operator's settings (its ConfigMap), defaults when this user may not read them."""
        if self._settings is None:
            try:
                cm = self.api.get("v1", "ConfigMap", "substratus-settings", self.operator_namespace)
            except KubeError:
                cm = None
            self._settings = settings_from_configmap(cm.get("data") or {}) if cm else KubeSettings()
        return self._settings

    def store(self) -> Optional[ArtifactStore]:
        """The artifact store, when it is object storage this machine can reach."""
        s = self.settings()
        if s.artifact_store.startswith("pvc://"):
            return None
        return ArtifactStore(s.artifact_store, endpoint_url=s.s3_endpoint_url or None)

    def runtime(self) -> KubernetesRuntime:
        return KubernetesRuntime(self.api, self.settings())

    def start(self) -> dict[str, Any]:
        raise ControlPlaneError("`sub up` and `sub down` manage the local control plane; on a cluster the "
                                "operator runs there", hint="see `kubectl -n substratus get deploy "
                                                            "substratus-operator`, or drop --context")

    def stop(self) -> bool:
        self.start()
        return False

    # -- apply -----------------------------------------------------------------------------------
    def apply(self, objects: List[dict[str, Any]], *, dry_run: bool = False) -> List[dict[str, str]]:
        resources = self.validate(objects)
        self.check_references(resources)
        store = self.store() if any((o.spec.model_dump().get("source") or {}).get("dir") for o in resources) \
            and not dry_run else None
        prepared = [(o, cluster_apply.desired_body(o), cluster_apply.source_annotations(o, store, upload=not dry_run))
                    for o in resources]
        results = []
        for obj, desired, sources in prepared:
            current = self.api.get(CR_VERSION, obj.kind, obj.name, obj.namespace)
            if current is not None and (current.get("metadata") or {}).get("deletionTimestamp"):
                raise ValidationError([(obj.ref, "is being deleted")],
                                      hint=f"wait until `sub get {obj.kind.lower()} {obj.name}` says it is gone, "
                                           "then apply again")
            result, body = cluster_apply.change(current, desired, sources)
            if dry_run:
                results.append({"kind": obj.kind, "namespace": obj.namespace, "name": obj.name,
                                 "result": result + " (dry run)"})
                continue
            if result == "created" and body is not None:
                self.api.create(body)
            elif body is not None:
                self.api.patch(CR_VERSION, obj.kind, obj.name, body, obj.namespace)
            results.append({"kind": obj.kind, "namespace": obj.namespace, "name": obj.name, "result": result})
        return results

    def apply_dry_run(self, objects: List[dict[str, Any]]) -> List[dict[str, str]]:
        """Validate, resolve references and sources (git commits, `dir` snapshots); write nothing."""
        return self.apply(objects, dry_run=True)

    def validate(self, objects: List[dict[str, Any]]) -> List[Resource]:
        return parse_objects(objects)

    def check_references(self, objects: List[Resource]) -> None:
        check_references(objects, lambda key: self.api.get(CR_VERSION, key.kind, key.name, key.namespace) is not None)

    # -- read ------------------------------------------------------------------------------------
    def list(self, kind: Optional[str] = None, namespace: Optional[str] = None) -> List[dict[str, Any]]:
        items = []
        for k in [kind] if kind else KIND_ORDER:
            items += [document(o, k) for o in self.api.list(CR_VERSION, k, namespace)]
        return items

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        obj = self.api.get(CR_VERSION, kind, name, namespace)
        if obj is None:
            raise NotFoundError(f"{kind} {name!r} not found in namespace {namespace!r}",
                                hint=f"list what exists with `sub get {kind.lower()}s`")
        return document(obj, kind)

    def containers(self, kind: str, namespace: str, name: str) -> List[ContainerState]:
        found = self.runtime().containers(naming.object_labels(kind, namespace, name))
        return sorted(found, key=lambda c: c.started_at or "")

    def describe(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        doc = self.get(kind, namespace, name)
        containers: List[dict[str, Any]] = [
            {"name": c.name, "status": c.status, "image": c.image, "exitCode": c.exit_code, "ports": {}}
                      for c in self.containers(kind, namespace, name)]
        source = (doc["status"].get("source") or {}).get("description")
        out = {**doc, "generation": doc["metadata"].get("generation"), "source": source, "containers": containers,
               "logFiles": [self.store_url(k) for k in self.log_keys(kind, namespace, name)]}
        token = self.token(kind, namespace, name)
        if token:
            out["serverToken" if kind == "ModelServer" else "notebookToken"] = token
        return out

    def token(self, kind: str, namespace: str, name: str) -> Optional[str]:
        """A server's bearer token or a notebook's token, from its Secret (when this user may read it)."""
        from substratus.kube.records import token_from_secret, token_secret_name

        try:
            return token_from_secret(self.api.get("v1", "Secret", token_secret_name(kind, name), namespace))
        except KubeError:
            return None

    # -- logs ------------------------------------------------------------------------------------
    def store_url(self, key: str) -> str:
        return f"{self.settings().artifact_store.rstrip('/')}/{key}"

    def log_keys(self, kind: str, namespace: str, name: str) -> List[str]:
        """Log files in the store: the build log, and the newest run's job log and logs/ files."""
        store = self.store()
        if store is None:
            return []
        object_dir = ArtifactLayout().object_dir(kind, namespace, name)
        try:
            files = store.list(object_dir)
        except ArtifactError:
            return []
        keys = [str(object_dir / f) for f in files if f.endswith(".log") and "/" not in f]
        job_logs = [f for f in files if f.count("/") == 1 and f.endswith("/job.log")]
        if job_logs:
            newest = max(job_logs, key=lambda f: store.modified(object_dir / f)).split("/", 1)[0]
            keys += [str(object_dir / f) for f in files
                     if f.startswith(newest + "/") and (f.endswith(".log") or f.startswith(newest + "/logs/"))]
        return keys

    def logs(self, kind: str, namespace: str, name: str, follow: bool) -> Iterator[str]:
        self.get(kind, namespace, name)
        store = self.store()
        for key in self.log_keys(kind, namespace, name):
            yield f"==> {self.store_url(key)} <=="
            try:
                assert store is not None
                yield from store.read_bytes(PurePosixPath(key)).decode("utf-8", "replace").splitlines()
            except (ArtifactError, AssertionError) as err:
                yield f"(cannot read it from here: {err})"
        containers = self.containers(kind, namespace, name)
        runtime = self.runtime()
        for c in containers:
            live = follow and c.running and c is containers[-1]
            yield f"==> container {c.name} ({c.status}) <=="
            yield from runtime.logs(c.name, follow=live)

    # -- delete ----------------------------------------------------------------------------------
    def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        [result] = self.delete_many([ObjectKey(kind, namespace, name)], missing_ok=False)
        return result

    def delete_many(self, keys: List[ObjectKey], missing_ok: bool = True) -> List[dict[str, Any]]:
        """Delete resources; the operator removes what they run. Waits (a while) until they are gone."""
        out, doomed = [], []
        for kind, ns, name in keys:
            if self.api.get(CR_VERSION, kind, name, ns) is None:
                if not missing_ok:
                    self.get(kind, ns, name)  # NotFoundError with the usual hint
                out.append({"kind": kind, "namespace": ns, "name": name, "result": "not found", "containers": []})
                continue
            containers = [c.name for c in self.containers(kind, ns, name)]
            self.api.delete(CR_VERSION, kind, name, ns)
            doomed.append(ObjectKey(kind, ns, name))
            out.append({"kind": kind, "namespace": ns, "name": name, "result": "deleted", "containers": containers})
        self.wait_gone(doomed)
        return out

    def wait_gone(self, keys: List[ObjectKey], timeout: float = DELETE_WAIT) -> None:
        deadline = time.monotonic() + timeout
        pending = list(keys)
        while pending and time.monotonic() < deadline:
            pending = [k for k in pending if self.api.get(CR_VERSION, k[0], k[2], k[1]) is not None]
            if pending:
                self.sleep(0.2)
        if pending:
            names = ", ".join(f"{k[0].lower()}/{k[2]}" for k in pending)
            raise SubstratusError(f"{names}: deletion requested, but still there after {timeout:.0f}s",
                                  hint="the operator removes what they run first; is it running? "
                                       "`kubectl -n substratus logs deploy/substratus-operator`")

    # -- label selectors ---------------------------------------------------------------------------
    def list_selected(self, kind: Optional[str], namespace: Optional[str],
                      selector: str) -> tuple[List[dict[str, Any]], str]:
        """Objects whose labels match `selector` ('' selects all); no list resourceVersion spans kinds."""
        sel = parse_selector(selector)
        items = [o for o in self.list(kind, namespace) if sel.matches(o["metadata"].get("labels") or {})]
        return items, ""

    def watch_selected(self, kind: Optional[str], namespace: Optional[str], selector: str,
                       resource_version: Optional[str] = None) -> Iterator[dict[str, Any]]:
        """The watch of `watch`, restricted to the selected objects (a fresh list each time: the
        polling watch has nothing to resume from)."""
        sel = parse_selector(selector)
        inside: set[ObjectKey] = set()
        for event in self.watch(kind, namespace):
            obj = event.get("object")
            if obj is None:
                yield event
                continue
            meta = obj.get("metadata") or {}
            key = ObjectKey(obj.get("kind", ""), meta.get("namespace", "default"), meta.get("name", ""))
            if event["type"] == "DELETED":
                if key in inside:
                    inside.discard(key)
                    yield event
            elif sel.matches(meta.get("labels") or {}):
                inside.add(key)
                yield event
            elif key in inside:  # its labels changed: it left the selection
                inside.discard(key)
                yield {"type": "DELETED", "object": obj}

    def delete_selected(self, kind: Optional[str], namespace: Optional[str], selector: str) -> List[dict[str, Any]]:
        if not selector.strip():
            raise ValidationError([("--selector", "an empty selector would delete everything")],
                                  hint="name the labels to select, e.g. -l app=demo")
        items, _ = self.list_selected(kind, namespace, selector)
        return self.delete_many([ObjectKey(o["kind"], o["metadata"].get("namespace", "default"), o["metadata"]["name"])
                                 for o in items])

    def running(self) -> bool:
        """Whether the cluster's API answers now."""
        try:
            self.api.get("v1", "Namespace", self.operator_namespace)
        except (KubeError, OSError):
            return False
        return True

    # -- watch -----------------------------------------------------------------------------------
    def watch(self, kind: Optional[str] = None, namespace: Optional[str] = None,
              timeout: Optional[float] = None) -> Iterator[dict[str, Any]]:
        """ADDED/MODIFIED/DELETED events from listing every POLL seconds; a BOOKMARK after the first list."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: dict[ObjectKey, str] = {}
        first = True
        while True:
            now: dict[ObjectKey, dict[str, Any]] = {ObjectKey(o["kind"], o["metadata"].get("namespace", "default"),
                                               o["metadata"]["name"]): o for o in self.list(kind, namespace)}
            for key, obj in now.items():
                version = str(obj["metadata"].get("resourceVersion", ""))
                if seen.get(key) != version:
                    yield {"type": "ADDED" if key not in seen else "MODIFIED", "object": obj}
                    seen[key] = version
            for key in [k for k in seen if k not in now]:
                del seen[key]
                yield {"type": "DELETED", "object": {"kind": key[0], "metadata": {"namespace": key[1],
                                                                                   "name": key[2]}}}
            if first:
                yield {"type": "BOOKMARK"}
                first = False
            if deadline is not None and time.monotonic() >= deadline:
                return
            self.sleep(POLL)
