"""Shared set-up for tests on the emulated cluster: CRDs installed, custom resources created."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Optional

from substratus.build import naming
from substratus.resources import crd
from substratus.runtimes.kubernetes.client import KubeApi

CR_VERSION = "substratus.ai/v1"


def install_crds(api: KubeApi) -> None:
    for c in crd.crds():
        api.apply(c)


def create_cr(api: KubeApi, kind: str, name: str, spec: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    return api.create({"apiVersion": CR_VERSION, "kind": kind, "metadata": {"name": name, "namespace": namespace},
                       "spec": spec})


def labels(kind: str, name: str, role: str, namespace: str = "default", **extra: str) -> dict[str, str]:
    """The labels the planners put on what they create (build.naming)."""
    return naming.object_labels(kind, namespace, name, instance="k8s", role=role, **extra)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: Optional[Any] = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
