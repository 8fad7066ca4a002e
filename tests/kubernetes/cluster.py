"""An emulated Kubernetes cluster for tests: kmock's API emulator over real HTTP,
plus what kube-apiserver and kube-controller-manager would add.

kmock.KubernetesEmulator stores objects and serves create/patch/delete, lists
and watch streams, merging JSON plainly. `ApiServer` adds what clients rely on:
uid, creationTimestamp, resourceVersion and generation; label selectors on
lists and watches; discovery of the built-in resources; CRDs that become served
resources (and are marked Established) when they are created; pod logs.
`kubelet.Controllers` plays the controllers. `Cluster` runs both in a thread
with its own event loop, so synchronous code (the runtime, `sub`) and
subprocesses (the operator) talk to it over HTTP like to any API server.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import os
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Optional

import aiohttp.web
import attrs
import kmock
from kmock._internal import apps, enums

BUILTIN: dict[str, tuple[str, bool, tuple[str, ...]]] = {
    "v1/namespaces": ("Namespace", False, ()),
    "v1/nodes": ("Node", False, ("status",)),
    "v1/pods": ("Pod", True, ("status", "log")),
    "v1/services": ("Service", True, ("status",)),
    "v1/secrets": ("Secret", True, ()),
    "v1/configmaps": ("ConfigMap", True, ()),
    "v1/serviceaccounts": ("ServiceAccount", True, ()),
    "v1/events": ("Event", True, ()),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", True, ("status",)),
    "batch/v1/jobs": ("Job", True, ("status",)),
    "apps/v1/deployments": ("Deployment", True, ("status", "scale")),
    "apps/v1/replicasets": ("ReplicaSet", True, ("status",)),
    "events.k8s.io/v1/events": ("Event", True, ()),
    "rbac.authorization.k8s.io/v1/clusterroles": ("ClusterRole", False, ()),
    "rbac.authorization.k8s.io/v1/clusterrolebindings": ("ClusterRoleBinding", False, ()),
    "rbac.authorization.k8s.io/v1/roles": ("Role", True, ()),
    "rbac.authorization.k8s.io/v1/rolebindings": ("RoleBinding", True, ()),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False, ("status",)),
}
VERBS = {"get", "list", "watch", "create", "patch", "update", "delete"}


def now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def matches_selector(labels: dict[str, str], selector: str) -> bool:
    """Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k) != v:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    _rv: Any = attrs.field(factory=lambda: itertools.count(1), init=False)
    pod_logs: dict[tuple[str, str, str], list[str]] = attrs.field(factory=dict, init=False)
    finished_logs: set[tuple[str, str, str]] = attrs.field(factory=set, init=False)
    created_log: list[tuple[str, str, str]] = attrs.field(factory=list, init=False)  # (kind, ns, name) in order
    namespaces: dict[str, dict[str, Any]] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, (kind, namespaced, subs) in BUILTIN.items():
            self.resources[key] = kmock.ResourceInfo(kind=kind, namespaced=namespaced, verbs=VERBS,
                                                     subresources=set(subs))

    # -- Namespace objects ---------------------------------------------------------------------
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """kmock 0.8's path parser reads `/api/v1/namespaces[/NAME]` as a namespace prefix without a
        resource (and fails on it), so Namespace objects are served here, before it parses."""
        parts = raw_request.path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4 and "watch" not in raw_request.query:
            return await self._namespaces(raw_request, parts[3] if len(parts) == 4 else None)
        return await super().__call__(raw_request)

    async def _namespaces(self, raw: aiohttp.web.BaseRequest, name: Optional[str]) -> aiohttp.web.StreamResponse:
        def status(code: int, reason: str) -> aiohttp.web.Response:
            return aiohttp.web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                              "code": code, "reason": reason, "message": reason}, status=code)
        if raw.method == "POST" and name is None:
            body = await raw.json()
            name = body["metadata"]["name"]
            if name in self.namespaces:
                return status(409, "AlreadyExists")
            body["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=now(), resourceVersion=str(next(self._rv)))
            body["status"] = {"phase": "Active"}
            self.namespaces[name] = body
            self.created_log.append(("Namespace", "", name))
            return aiohttp.web.json_response(body, status=201)
        if raw.method == "GET" and name is None:
            return aiohttp.web.json_response({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {},
                                              "items": list(self.namespaces.values())})
        if name not in self.namespaces:
            return status(404, "NotFound")
        if raw.method == "PATCH":
            for k, v in ((await raw.json()).get("metadata") or {}).get("labels", {}).items():
                self.namespaces[name]["metadata"].setdefault("labels", {})[k] = v
        elif raw.method == "DELETE":
            return aiohttp.web.json_response(self.namespaces.pop(name))
        return aiohttp.web.json_response(self.namespaces[name])

    # -- what kube-apiserver adds -------------------------------------------------------------
    async def _handle(self, request: Any) -> Any:
        if request.resource is not None and isinstance(request.data, dict):
            self._stamp(request)
        response = await super()._handle(request)
        if request.resource is not None and request.action == enums.action.CREATE and response.status < 300:
            meta = request.data.get("metadata", {})
            self.created_log.append((request.data.get("kind", ""), meta.get("namespace", ""), meta.get("name", "")))
            if request.resource.plural == "customresourcedefinitions":
                await self._establish(request.data)
        return response

    def _stamp(self, request: Any) -> None:
        meta = request.data.setdefault("metadata", {}) if request.action in (
            enums.action.CREATE, enums.action.UPDATE) else None
        if meta is None:
            return
        meta["resourceVersion"] = str(next(self._rv))
        if request.action == enums.action.CREATE:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            if request.namespace and not meta.get("namespace"):
                meta["namespace"] = request.namespace
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now())
            meta["generation"] = 1
        elif "spec" in request.data and not request.subresource:
            current = self._get((request.resource, request.namespace, request.name))
            if current is not None and not current.deleted and current.get("spec") != {
                    **current.get("spec", {}), **request.data["spec"]}:
                meta["generation"] = int(current.get("metadata", {}).get("generation", 1)) + 1

    async def _establish(self, crd: dict[str, Any]) -> None:
        """A created CRD is served at once, as the API server does once it is Established."""
        spec = crd["spec"]
        for version in spec["versions"]:
            names = spec["names"]
            self.resources[f"{spec['group']}/{version['name']}/{names['plural']}"] = kmock.ResourceInfo(
                kind=names["kind"], singular=names.get("singular"), namespaced=spec["scope"] == "Namespaced",
                verbs=VERBS, shortnames=set(names.get("shortNames", [])), categories=set(names.get("categories", [])),
                subresources=set(version.get("subresources", {})))
        key = (kmock.resource("apiextensions.k8s.io/v1/customresourcedefinitions"), None, crd["metadata"]["name"])
        obj = self._get(key)
        if obj is not None:
            obj.patch({"status": {"conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted"}],
                                  "acceptedNames": spec["names"]}})

    def _get(self, key: tuple[Any, Optional[str], Optional[str]]) -> Any:
        return self.objects[key] if key in self.objects else None

    # -- label selectors ----------------------------------------------------------------------
    async def _serve_list(self, request: Any) -> Any:
        result = await super()._serve_list(request)
        selector = (request.params or {}).get("labelSelector")
        if selector and isinstance(result, dict):
            result["items"] = [i for i in result["items"]
                               if matches_selector(i.get("metadata", {}).get("labels") or {}, selector)]
        return result

    async def _serve_watch(self, request: Any) -> AsyncIterator[Any]:
        selector = (request.params or {}).get("labelSelector")
        async for event in super()._serve_watch(request):
            if selector and isinstance(event, dict):
                labels = event.get("object", {}).get("metadata", {}).get("labels") or {}
                if not matches_selector(labels, selector):
                    continue
            yield event

    # -- pod logs -----------------------------------------------------------------------------
    async def _serve_fetch(self, request: Any) -> Any:
        if request.subresource == "log":
            return await self._serve_log(request)
        return await super()._serve_fetch(request)

    async def _serve_log(self, request: Any) -> Any:
        params = request.params or {}
        pod = self._get((request.resource, request.namespace, request.name))
        if pod is None or pod.deleted:
            raise kmock.KubernetesObjectNotFoundError()
        container = params.get("container") or pod["spec"]["containers"][0]["name"]
        key = (request.namespace, request.name, container)
        lines = list(self.pod_logs.get(key, []))
        if "tailLines" in params:
            lines = lines[-int(params["tailLines"]):] if int(params["tailLines"]) else []
        if params.get("follow") != "true":
            return "".join(f"{line}\n" for line in lines).encode()
        return self._follow(key, len(self.pod_logs.get(key, [])), lines)

    async def _follow(self, key: tuple[str, str, str], seen: int, first: list[str]) -> AsyncIterator[bytes]:
        yield "".join(f"{line}\n" for line in first).encode()
        while True:
            lines = self.pod_logs.get(key, [])
            if len(lines) > seen:
                yield "".join(f"{line}\n" for line in lines[seen:]).encode()
                seen = len(lines)
            elif key in self.finished_logs:
                return
            await asyncio.sleep(0.05)

    # -- for the controllers and tests ----------------------------------------------------------
    def live(self, plural: str) -> list[dict[str, Any]]:
        """Snapshot of the stored objects of one resource (e.g. 'batch/v1/jobs')."""
        res = kmock.resource(plural)
        return [json.loads(json.dumps(obj.raw)) for (r, _, _), obj in list(self.objects.items())
                if r == res and not obj.deleted]

    def all_live(self) -> list[dict[str, Any]]:
        return [json.loads(json.dumps(obj.raw)) for _, obj in list(self.objects.items()) if not obj.deleted]


class Cluster:
    """The API server (plus controllers) on a free port, in a background thread."""

    def __init__(self, controllers: Optional[Any] = None) -> None:
        self.server = ApiServer()
        self.controllers = controllers
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self._ready = threading.Event()
        self._stop: Optional[asyncio.Event] = None
        self._thread = threading.Thread(target=self._run, name="emulated-cluster", daemon=True)
        self.kubeconfig = ""

    def __enter__(self) -> "Cluster":
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the emulated API server did not start")
        self.kubeconfig = write_kubeconfig(self.url)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        if self.kubeconfig:
            os.unlink(self.kubeconfig)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with self.server, apps.Server(self.server) as srv:
            self.url = str(srv.url).rstrip("/")
            tasks = []
            if self.controllers is not None:
                tasks.append(asyncio.create_task(self.controllers.run(self.server, self.url)))
            self._ready.set()
            await self._stop.wait()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        """Run a coroutine on the cluster's loop from a test thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def objects(self, plural: str) -> list[dict[str, Any]]:
        async def snapshot() -> list[dict[str, Any]]:
            return self.server.live(plural)
        result: list[dict[str, Any]] = self.call(snapshot())
        return result


def write_kubeconfig(server: str, *, namespace: str = "default") -> str:
    """A kubeconfig file for the plain-HTTP emulator; returns its path."""
    data = {"apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": server}}],
            "users": [{"name": "emulator", "user": {"token": "emulator-token"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator",
                                                          "namespace": namespace}}]}
    fd, path = tempfile.mkstemp(prefix="kubeconfig-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    return path
