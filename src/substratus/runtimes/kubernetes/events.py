"""Container events from watch streams: the Kubernetes side of `Runtime.events`.

The controller follows engine events to keep its container cache current
(observe.ContainerCache): for each event it looks the container up again, or
forgets it on `remove`. Here a "container" is a Job, Deployment or Pod the
runtime created; Jobs, Deployments and Pods (theirs too: a pod's progress is
its workload's) are watched with the caller's label selector, one stream per
resource, and each change becomes an EngineEvent named by the planner's
container name, in the engine's words: `start` (created), `died` (a Job or
Pod ended, a Deployment scaled to zero), `update` (anything else), `remove`.
There are no image events on a cluster.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from typing import Any, Optional

import urllib3

from substratus.runtimes.base import EngineEvent
from substratus.runtimes.kubernetes import names
from substratus.runtimes.kubernetes.client import KubeApi, KubeError, resource_path
from substratus.runtimes.kubernetes.workloads import CONTAINER_NAME_ANNOTATION

WATCHED = (("batch/v1", "Job"), ("apps/v1", "Deployment"), ("v1", "Pod"))
CONTROLLERS = {"Job", "Deployment", "ReplicaSet"}


def to_event(kind: str, watch_type: str, obj: dict[str, Any]) -> Optional[EngineEvent]:
    """One watch event as an engine event; None for objects the runtime did not make."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    name = annotations.get(CONTAINER_NAME_ANNOTATION)
    if not name:
        return None
    owned = any(o.get("kind") in CONTROLLERS for o in meta.get("ownerReferences") or [])
    if watch_type == "DELETED" and not (kind == "Pod" and owned):
        action = "remove"
    elif _finished(kind, obj):
        action = "died"
    elif watch_type == "ADDED" and not (kind == "Pod" and owned):
        action = "start"
    else:
        action = "update"  # progress; a Job's or Deployment's pod going never means the workload went
    return EngineEvent(type="container", action=action, name=name, id=meta.get("uid", ""),
                       labels=names.decode_labels(meta.get("labels") or {}, annotations))


def _finished(kind: str, obj: dict[str, Any]) -> bool:
    """The engine's `died`: a Job or Pod that ended, a Deployment scaled to zero."""
    status = obj.get("status") or {}
    if kind == "Job":
        return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                   for c in status.get("conditions") or [])
    if kind == "Pod":
        return status.get("phase") in ("Succeeded", "Failed")
    return bool((obj.get("spec") or {}).get("replicas", 1) == 0)


class KubeEvents:
    """Iterate the events of three watch streams; `close()` (any thread) ends the iteration."""

    def __init__(self, api: KubeApi, labels: dict[str, str], namespace: Optional[str] = None) -> None:
        self.api, self.namespace = api, namespace
        self.selector = names.selector(labels) or None
        self._queue: "queue.Queue[Optional[EngineEvent] | Exception]" = queue.Queue()
        self._responses: list[Any] = []
        self._closed = threading.Event()
        self._threads = [threading.Thread(target=self._watch, args=w, daemon=True, name=f"watch-{w[1]}")
                         for w in WATCHED]
        for t in self._threads:
            t.start()

    def _watch(self, api_version: str, kind: str) -> None:
        try:
            raw = self.api.request("GET", resource_path(api_version, kind, self.namespace),
                                   query={"watch": "true", "labelSelector": self.selector}, stream=True)
            self._responses.append(raw)
            buffer = b""
            for chunk in raw.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    self._line(kind, line)
        except (KubeError, OSError, ValueError, urllib3.exceptions.HTTPError) as err:
            if not self._closed.is_set():
                self._queue.put(err)
        if not self._closed.is_set():  # the server ended the stream: the caller relists and reconnects
            self._queue.put(KubeError(f"the watch of {kind} objects ended"))

    def _line(self, kind: str, line: bytes) -> None:
        if not line.strip():
            return
        data = json.loads(line)
        if data.get("type") == "ERROR":
            raise KubeError(f"watch of {kind}: {data.get('object', {}).get('message', data)}")
        event = to_event(kind, data.get("type", ""), data.get("object") or {})
        if event is not None:
            self._queue.put(event)

    def __iter__(self) -> Iterator[EngineEvent]:
        while True:
            item = self._queue.get()
            if item is None or self._closed.is_set():
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def close(self) -> None:
        self._closed.set()
        self._queue.put(None)
        for raw in list(self._responses):
            try:
                raw.shutdown()
            except (OSError, AttributeError):
                pass
