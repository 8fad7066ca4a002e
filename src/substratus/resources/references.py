"""Which objects an object's spec names: the edges of the dependency graph.

Used to refuse a manifest that names a missing object, to wake dependents
when an object's status changes, and to draw lineage. Pure.
"""

from __future__ import annotations

from typing import Any

from substratus.resources.objectkey import ObjectKey


def references(kind: str, namespace: str, spec: dict[str, Any]) -> set[ObjectKey]:
    """(kind, namespace, name) of every object `spec` (wire form) refers to."""
    out: set[ObjectKey] = set()

    def add(ref_kind: str, name: Any) -> None:
        if isinstance(name, str) and name:
            out.add(ObjectKey(ref_kind, namespace, name))

    if kind == "Model":
        add("Model", (spec.get("source") or {}).get("modelName"))
        add("Dataset", (spec.get("training") or {}).get("datasetName"))
    elif kind == "ModelServer":
        add("Model", spec.get("modelName"))
    elif kind == "Notebook":
        add("Model", spec.get("modelName"))
        add("Dataset", spec.get("datasetName"))
    return out
