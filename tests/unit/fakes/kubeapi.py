"""An API server in a dict, for the operator's unit tests: get, list (by labels), create, merge-patch
(status as a subresource), delete, apply; generation bumped on a spec change, as kube-apiserver does.
Requests are counted, so a test can say what a pass asked. Watch streams are the test's to play:
it hands the manager the bodies it wants seen."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any, Optional

from substratus.runtimes.kubernetes.client import Applied


def merged(old: Any, patch: Any) -> Any:
    """RFC 7386: objects merge, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(old) if isinstance(old, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merged(out.get(k), v)
    return out


class MemoryApi:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()

    def get(self, api_version: str, kind: str, name: str, namespace: Optional[str] = None) -> Optional[dict[str, Any]]:
        self.calls["get"] += 1
        obj = self.objects.get((kind, namespace or "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, api_version: str, kind: str, namespace: Optional[str] = None,
             labels: Optional[dict[str, str]] = None) -> list[dict[str, Any]]:
        self.calls["list"] += 1
        return [copy.deepcopy(o) for (k, ns, _), o in self.objects.items()
                if k == kind and (namespace is None or ns == namespace)
                and all((o["metadata"].get("labels") or {}).get(a) == b for a, b in (labels or {}).items())]

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls["create"] += 1
        meta = obj["metadata"]
        body = copy.deepcopy(obj)
        body["metadata"] = {**meta, "generation": 1, "uid": f"uid-{meta['name']}"}
        self.objects[(obj["kind"], meta.get("namespace", ""), meta["name"])] = body
        return copy.deepcopy(body)

    def patch(self, api_version: str, kind: str, name: str, patch: dict[str, Any], namespace: Optional[str] = None,
              subresource: Optional[str] = None) -> dict[str, Any]:
        self.calls["patch-status" if subresource == "status" else "patch"] += 1
        key = (kind, namespace or "", name)
        old = self.objects[key]
        if subresource == "status":
            patch = {"status": patch.get("status")}
        new = merged(old, patch)
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        self.objects[key] = new
        return copy.deepcopy(new)

    def delete(self, api_version: str, kind: str, name: str, namespace: Optional[str] = None,
               propagation: str = "Background") -> bool:
        self.calls["delete"] += 1
        return self.objects.pop((kind, namespace or "", name), None) is not None

    def apply(self, obj: dict[str, Any]) -> Applied:
        meta = obj["metadata"]
        if (obj["kind"], meta.get("namespace", ""), meta["name"]) in self.objects:
            self.patch(obj["apiVersion"], obj["kind"], meta["name"], obj, meta.get("namespace"))
            return "updated"
        self.create(obj)
        return "created"
