"""Which objects an object's spec names: the edges of the dependency graph.

Used to refuse a manifest that names a missing object (naming the field that names it), to wake
dependents when an object's status changes, and to draw lineage. Pure.
"""

from __future__ import annotations

from typing import Any

from substratus.resources.objectkey import ObjectKey

# kind -> (field path in the spec's wire form, kind it names)
FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "Model": (("spec.source.modelName", "Model"), ("spec.training.datasetName", "Dataset")),
    "ModelServer": (("spec.modelName", "Model"),),
    "Notebook": (("spec.modelName", "Model"), ("spec.datasetName", "Dataset")),
}


def named_references(kind: str, namespace: str, spec: dict[str, Any]) -> list[tuple[str, ObjectKey]]:
    """(field path, key) of every object `spec` (wire form) refers to, in the order of FIELDS."""
    out: list[tuple[str, ObjectKey]] = []
    for path, ref_kind in FIELDS.get(kind, ()):
        value: Any = spec
        for part in path.split(".")[1:]:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            out.append((path, ObjectKey(ref_kind, namespace, value)))
    return out


def references(kind: str, namespace: str, spec: dict[str, Any]) -> set[ObjectKey]:
    """(kind, namespace, name) of every object `spec` (wire form) refers to."""
    return {key for _, key in named_references(kind, namespace, spec)}
