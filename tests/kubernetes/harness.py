"""Shared set-up for tests on the emulated cluster: CRDs installed, custom resources created."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
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


class OperatorProcess:
    """`python -m substratus.kube ARGS` as a process of its own, its output kept for checks and
    for failure reports."""

    def __init__(self, *args: str, env: Optional[dict[str, str]] = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "substratus.kube", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     env={**(env if env is not None else os.environ), "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as Kubernetes stops it; its exit code (-9 when it had to be killed after `timeout`)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
