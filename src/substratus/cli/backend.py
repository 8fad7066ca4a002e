"""Which control plane `sub` talks to: the local one (default) or a Kubernetes cluster.

    sub --context NAME ...            the cluster of kubeconfig context NAME
    SUBSTRATUS_BACKEND=kubernetes     the cluster of the current context (--kubeconfig or $KUBECONFIG)
    SUBSTRATUS_BACKEND=local          the embedded control plane (the default)

Both clients answer the same verbs with the same shapes, so every command and
output format works on either. The cluster client (and the Kubernetes client
library under it) is imported only when chosen: `sub` must start fast.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, List, Optional, Protocol

from substratus.errors import ControlPlaneError, ValidationError
from substratus.resources.objectkey import ObjectKey

BACKEND_ENV = "SUBSTRATUS_BACKEND"
BACKENDS = ("local", "kubernetes")


class Backend(Protocol):
    def start(self) -> dict[str, Any]: ...

    def stop(self) -> bool: ...

    def apply(self, objects: List[dict[str, Any]]) -> List[dict[str, str]]: ...

    def list(self, kind: Optional[str] = None, namespace: Optional[str] = None) -> List[dict[str, Any]]: ...

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]: ...

    def describe(self, kind: str, namespace: str, name: str) -> dict[str, Any]: ...

    def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any]: ...

    def delete_many(self, keys: List[ObjectKey]) -> List[dict[str, Any]]: ...

    def watch(self, kind: Optional[str] = None, namespace: Optional[str] = None,
              timeout: Optional[float] = None) -> Iterator[dict[str, Any]]: ...

    def logs(self, kind: str, namespace: str, name: str, follow: bool) -> Iterator[str]: ...

    def apply_dry_run(self, objects: List[dict[str, Any]]) -> List[dict[str, str]]: ...

    def list_selected(self, kind: Optional[str], namespace: Optional[str],
                      selector: str) -> tuple[List[dict[str, Any]], str]: ...

    def watch_selected(self, kind: Optional[str], namespace: Optional[str], selector: str,
                       resource_version: Optional[str] = None) -> Iterator[dict[str, Any]]: ...

    def delete_selected(self, kind: Optional[str], namespace: Optional[str],
                        selector: str) -> List[dict[str, Any]]: ...

    def running(self) -> bool: ...


def wants_cluster(context: Optional[str], env: Optional[dict[str, str]] = None) -> bool:
    value = (env if env is not None else os.environ).get(BACKEND_ENV, "").strip().lower() or "local"
    if value not in BACKENDS:
        raise ValidationError([(BACKEND_ENV, f"{value!r} is not a backend: use local or kubernetes")])
    return bool(context) or value == "kubernetes"


def make_client(context: Optional[str] = None, kubeconfig: Optional[str] = None) -> Backend:
    if wants_cluster(context):
        from substratus.cli.cluster import ClusterClient  # the Kubernetes client, only on this path

        return ClusterClient.connect(kubeconfig, context)
    from substratus.cli.client import Client, home_dir

    return Client(home_dir())


def require_local(command: str, context: Optional[str] = None) -> None:
    """Commands that only the local control plane offers refuse a cluster instead of silently
    working on this machine."""
    if context is None:
        import click

        ctx = click.get_current_context(silent=True)
        root = ctx.find_root().obj if ctx is not None else None
        context = (root or {}).get("context") if isinstance(root, dict) else None
    if wants_cluster(context):
        raise ControlPlaneError(f"`sub {command}` works with the local control plane only, not on a cluster",
                                hint="drop --context and unset SUBSTRATUS_BACKEND (on a cluster, reach servers and "
                                     "notebooks through their Services, e.g. `kubectl port-forward`)")
