"""Dict-in, dict-out REST over the official Kubernetes client: the only module importing it.

The official client does what is hard to get right (kubeconfig contexts, exec
credential plugins, client certificates, in-cluster service accounts, proxies);
the generators speak plain dicts, so requests go through its configured
`ApiClient` with paths made here from apiVersion and kind. Patches are JSON
merge patches, which every API server (and the test emulator) understands.
Errors become `KubeError` with the HTTP status and the server's message,
classified here once by that status (`api_error`): 409 AlreadyExists is
`KubeAlreadyExists` (an `AlreadyExists`), 401 and 403 are `KubeUnauthorized`
(an `Unauthorized`), and whether retrying may help (`temporary`) follows the
status: no answer, 409, 429 and 5xx may pass; any other 4xx will not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, List, Literal, Optional  # List: `list` is a method name in KubeApi
from urllib.parse import urlencode

import urllib3
from kubernetes import client as _kclient
from kubernetes import config as _kconfig

from substratus.errors import AlreadyExists, EngineError, Unauthorized

# The client is only partly typed; its calls are checked by the tests, not by mypy.
kclient: Any = _kclient
kconfig: Any = _kconfig
Applied = Literal["created", "updated", "unchanged"]
# (apiVersion, kind) -> (plural, namespaced) for every kind this project creates or reads.
RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Node"): ("nodes", False),
    ("v1", "Pod"): ("pods", True),
    ("v1", "Service"): ("services", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Event"): ("events", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("batch/v1", "Job"): ("jobs", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "ReplicaSet"): ("replicasets", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("substratus.ai/v1", "Dataset"): ("datasets", True),
    ("substratus.ai/v1", "Model"): ("models", True),
    ("substratus.ai/v1", "ModelServer"): ("modelservers", True),
    ("substratus.ai/v1", "Notebook"): ("notebooks", True),
}


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: keys `new` lacks become null.

    A merge patch of the whole desired object would leave keys a user removed from a manifest
    (or a field a status no longer has) in place; this one removes them."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch(old[key], value)
    return patch


class KubeError(EngineError):
    """The API server refused a request (`status`, the server's `reason`) or could not be reached
    (status 0)."""

    def __init__(self, message: str, *, status: int = 0, reason: str = "", hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.reason = reason
        self.temporary = status == 0 or status >= 500 or status in (409, 429)


class KubeAlreadyExists(KubeError, AlreadyExists):
    """409 AlreadyExists: an object of that name exists (often one still being deleted)."""


class KubeUnauthorized(KubeError, Unauthorized):
    """401 or 403: the credentials were refused, or lack the permission (RBAC)."""


def api_error(message: str, *, status: int, reason: str = "", hint: str = "") -> KubeError:
    """The typed error for an API server's answer (or no answer: status 0)."""
    if status == 409 and reason != "Conflict":  # Conflict: a stale resourceVersion, not a name taken
        return KubeAlreadyExists(message, status=status, reason=reason or "AlreadyExists", hint=hint)
    if status in (401, 403):
        return KubeUnauthorized(message, status=status, reason=reason, hint=hint)
    return KubeError(message, status=status, reason=reason, hint=hint)


@dataclass(frozen=True)
class Connection:
    """What an HTTP client needs to reach the API server (kopf's login uses it too)."""

    server: str
    token: Optional[str] = None
    ca_path: Optional[str] = None
    cert_path: Optional[str] = None
    key_path: Optional[str] = None
    insecure: bool = False
    namespace: str = "default"


def resource_path(api_version: str, kind: str, namespace: Optional[str] = None, name: Optional[str] = None,
                  subresource: Optional[str] = None) -> str:
    try:
        plural, namespaced = RESOURCES[(api_version, kind)]
    except KeyError:
        raise KubeError(f"no API path known for {api_version} {kind}") from None
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespaced and namespace:
        base += f"/namespaces/{namespace}"
    elif namespaced and name:  # no namespace: only a list across all namespaces makes sense
        raise KubeError(f"{kind} {name} is namespaced: a namespace is needed")
    path = f"{base}/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


def _contains(have: Any, want: Any) -> bool:
    """Whether `have` already holds everything `want` says (what a merge patch would not change)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(_contains(have.get(k), v) for k, v in want.items())
    return bool(have == want)


class KubeApi:
    """The verbs the runtime, `sub kube install` and the operator need, on plain dicts."""

    def __init__(self, api_client: Any, *, namespace: str = "default") -> None:
        self.api = api_client
        self.namespace = namespace

    # -- connecting -----------------------------------------------------------------------
    @classmethod
    def connect(cls, kubeconfig: Optional[str] = None, context: Optional[str] = None) -> "KubeApi":
        """In-cluster service account when running in a pod, else the kubeconfig (flags > $KUBECONFIG)."""
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            cfg = kclient.Configuration()
            kconfig.load_incluster_config(client_configuration=cfg)
            ns_file = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
            namespace = open(ns_file).read().strip() if os.path.exists(ns_file) else "default"
            return cls(kclient.ApiClient(cfg), namespace=namespace)
        try:
            contexts, current = kconfig.list_kube_config_contexts(config_file=kubeconfig)
            api = kconfig.new_client_from_config(config_file=kubeconfig, context=context, persist_config=False)
        except (kconfig.ConfigException, OSError, TypeError) as err:
            raise KubeError(f"cannot load the kubeconfig ({kubeconfig or os.environ.get('KUBECONFIG') or '~/.kube/config'}"
                            f"{', context ' + context if context else ''}): {err}",
                            hint="check `kubectl config get-contexts`, or pass --kubeconfig/--context") from err
        chosen = next((c for c in contexts if c["name"] == context), current) if context else current
        namespace = (chosen or {}).get("context", {}).get("namespace") or "default"
        return cls(api, namespace=namespace)

    def connection(self) -> Connection:
        cfg = self.api.configuration
        token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
        if token and token.lower().startswith("bearer "):
            token = token[7:]
        return Connection(server=cfg.host, token=token, ca_path=cfg.ssl_ca_cert, cert_path=cfg.cert_file,
                          key_path=cfg.key_file, insecure=not cfg.verify_ssl, namespace=self.namespace)

    # -- raw requests ---------------------------------------------------------------------
    def request(self, method: str, path: str, *, body: Any = None, query: Optional[dict[str, Any]] = None,
                content_type: str = "application/json", stream: bool = False, timeout: Optional[float] = 30) -> Any:
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            path += "?" + urlencode(params)
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            method_, url, headers, body_, _ = self.api.param_serialize(method, path, header_params=headers, body=body,
                                                                       auth_settings=["BearerToken"])
            resp: Any = self.api.call_api(method_, url, header_params=headers, body=body_,
                                     _request_timeout=None if stream else timeout)
        except kclient.ApiException as err:
            raise api_error(f"{method} {path}: {err.reason}", status=err.status or 0) from err
        except (OSError, urllib3.exceptions.HTTPError) as err:
            raise KubeError(f"{method} {path}: cannot reach the API server {self.api.configuration.host}: {err}",
                            hint="check the cluster is up: kubectl cluster-info") from err
        if stream:
            if resp.status >= 400:
                self._raise(method, path, resp.status, resp.read())
            return resp.response
        data = resp.read()
        if resp.status >= 400:
            self._raise(method, path, resp.status, data)
        return json.loads(data) if data else None

    @staticmethod
    def _raise(method: str, path: str, status: int, data: bytes) -> None:
        try:
            info = json.loads(data)
        except ValueError:
            info = {"message": data.decode(errors="replace")[:300]}
        message = info.get("message") or "" if isinstance(info, dict) else str(info)
        reason = info.get("reason", "") if isinstance(info, dict) else ""
        hint = "the operator's ServiceAccount (or your user) lacks this permission: check the RBAC in " \
               "`sub kube install --dry-run`" if status == 403 else ""
        raise api_error(f"{method} {path} -> {status} {reason}: {message}".rstrip(": "), status=status,
                        reason=str(reason), hint=hint)

    # -- object verbs ---------------------------------------------------------------------
    def get(self, api_version: str, kind: str, name: str, namespace: Optional[str] = None) -> Optional[dict[str, Any]]:
        try:
            out: dict[str, Any] = self.request("GET", resource_path(api_version, kind, namespace, name))
            return out
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: Optional[str] = None,
             labels: Optional[dict[str, str]] = None) -> list[dict[str, Any]]:
        """Objects carrying all `labels` (checked here too, not only by the server's selector)."""
        selector = ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or None
        data = self.request("GET", resource_path(api_version, kind, namespace), query={"labelSelector": selector})
        items: list[dict[str, Any]] = data.get("items") or []
        want = labels or {}
        return [i for i in items
                if all((i.get("metadata", {}).get("labels") or {}).get(k) == v for k, v in want.items())]

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        out: dict[str, Any] = self.request("POST", resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace")),
                                           body=obj)
        return out

    def patch(self, api_version: str, kind: str, name: str, patch: dict[str, Any], namespace: Optional[str] = None,
              subresource: Optional[str] = None) -> dict[str, Any]:
        out: dict[str, Any] = self.request("PATCH", resource_path(api_version, kind, namespace, name, subresource),
                                           body=patch, content_type="application/merge-patch+json")
        return out

    def delete(self, api_version: str, kind: str, name: str, namespace: Optional[str] = None,
               propagation: str = "Background") -> bool:
        """Delete (children go too: Background propagation); False when it did not exist."""
        try:
            self.request("DELETE", resource_path(api_version, kind, namespace, name),
                         body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation})
        except KubeError as err:
            if err.status == 404:
                return False
            raise
        return True

    def apply(self, obj: dict[str, Any]) -> Applied:
        """Create, or merge-patch what differs; says which (idempotent, like CreateOrUpdate)."""
        meta = obj["metadata"]
        try:
            self.create(obj)
            return "created"
        except AlreadyExists:
            pass
        current = self.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace")) or {}
        desired = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
        if _contains(current, desired):
            return "unchanged"
        self.patch(obj["apiVersion"], obj["kind"], meta["name"], desired, meta.get("namespace"))
        return "updated"

    def log_lines(self, pod: str, namespace: str, *, container: Optional[str] = None, tail: Optional[int] = None,
                  follow: bool = False) -> Iterator[str]:
        """A pod's container output, line by line (following it when asked)."""
        path = resource_path("v1", "Pod", namespace, pod, "log")
        query = {"container": container, "tailLines": tail, "follow": "true" if follow else None}
        try:
            raw = self.request("GET", path, query=query, stream=True)
        except KubeError as err:
            if err.status in (400, 404):  # not started yet, or gone
                return
            raise
        buffer = b""
        try:
            for chunk in raw.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    yield line.decode(errors="replace")
            if buffer:
                yield buffer.decode(errors="replace")
        finally:
            raw.release_conn()

    def exec_in_pod(self, pod: str, namespace: str, container: str, argv: List[str], stdin: Optional[bytes],
                    timeout: float) -> tuple[int, bytes, str]:
        """Run `argv` in a pod's container over the API's exec channel (what `kubectl exec -i` uses).
        Binary frames, so file contents travel unchanged; stdin is closed after it is written (v5)."""
        from kubernetes.stream import stream as kstream  # websocket support: only on this path

        core = kclient.CoreV1Api(self.api)
        ws = kstream(core.connect_get_namespaced_pod_exec, pod, namespace, container=container, command=argv,
                     stdin=stdin is not None, stdout=True, stderr=True, tty=False, _preload_content=False,
                     binary=True)
        try:
            if stdin is not None:
                ws.write_stdin(stdin)
                ws.close_channel(0)
            ws.run_forever(timeout=timeout)
            out, err = ws.read_stdout() or b"", ws.read_stderr() or b""
            code = ws.returncode
        finally:
            ws.close()
        err_text = err.decode(errors="replace") if isinstance(err, bytes) else str(err)
        return (124 if code is None else int(code)), bytes(out), err_text
