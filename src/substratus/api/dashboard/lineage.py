"""The lineage graph an object page draws: dataset -> base model -> trained model -> servers, notebooks.

Edges come from what specs name (`resources.references`), pointing from the
object named to the one naming it, so the graph reads in the direction data
flows. The graph shown is the weakly connected part around the object in
focus (a dataset page shows the models trained on it and the base models they
started from), at most MAX_NODES nodes, nearest first. Each node is placed
in a column by its longest path from a source. A trained model's
`status.lineage` labels its edges with what was used at training time (the
dataset's sha256, the base image id), and an edge is marked `stale` when the
dataset's digest has changed since.

Pure: takes stored documents, returns JSON-ready dicts.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from substratus.reconcile.conditions import ready_reason
from substratus.resources.objectkey import ObjectKey
from substratus.resources.references import references

MAX_NODES = 60
EDGE_LABELS = {("Dataset", "Model"): "training data", ("Model", "Model"): "base model",
               ("Model", "ModelServer"): "serves", ("Model", "Notebook"): "opens", ("Dataset", "Notebook"): "opens"}


def node_id(key: ObjectKey) -> str:
    return "/".join(key)


def doc_key(doc: dict[str, Any]) -> ObjectKey:
    meta = doc.get("metadata") or {}
    return ObjectKey(str(doc.get("kind", "")), str(meta.get("namespace", "default")), str(meta.get("name", "")))


def edges_of(docs: dict[ObjectKey, dict[str, Any]]) -> list[tuple[ObjectKey, ObjectKey]]:
    """(upstream, downstream) for every reference between existing objects."""
    out = []
    for key, doc in docs.items():
        for ref in sorted(references(key[0], key[1], doc.get("spec") or {})):
            if ref in docs and ref != key:
                out.append((ref, key))
    return out


def component(focus: ObjectKey, edges: list[tuple[ObjectKey, ObjectKey]], limit: int = MAX_NODES) -> list[ObjectKey]:
    """Objects connected to `focus` (either direction), breadth first, at most `limit`."""
    neighbours: dict[ObjectKey, set[ObjectKey]] = {}
    for a, b in edges:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    seen, queue = [focus], deque([focus])
    while queue and len(seen) < limit:
        for nxt in sorted(neighbours.get(queue.popleft(), ())):
            if nxt not in seen and len(seen) < limit:
                seen.append(nxt)
                queue.append(nxt)
    return seen


def layers(nodes: list[ObjectKey], edges: list[tuple[ObjectKey, ObjectKey]]) -> dict[ObjectKey, int]:
    """Column of each node: its longest path from a node nothing points at (cycles cannot loop)."""
    depth = {k: 0 for k in nodes}
    for _ in range(len(nodes)):
        changed = False
        for a, b in edges:
            if depth[b] < depth[a] + 1 <= len(nodes):
                depth[b], changed = depth[a] + 1, True
        if not changed:
            break
    return depth


def node_details(doc: dict[str, Any]) -> list[list[str]]:
    """A few (label, value) lines people look for on each kind of node."""
    status, spec = doc.get("status") or {}, doc.get("spec") or {}
    source = status.get("source") or {}
    lines: list[list[str]] = []
    if source.get("gitCommit"):
        lines.append(["commit", str(source["gitCommit"])[:12]])
    elif source.get("description"):
        lines.append(["source", str(source["description"])[:60]])
    if status.get("digest"):
        lines.append(["data", short_digest(str(status["digest"]))])
    if doc.get("kind") == "Model" and status.get("containerImage"):
        lines.append(["image", str(status["containerImage"])])
    params = (spec.get("training") or {}).get("params")
    if params:
        lines.append(["params", ", ".join(f"{k}={v}" for k, v in sorted(params.items()))])
    return lines


def short_digest(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest[:19]


def edge_info(up: dict[str, Any], down: dict[str, Any]) -> dict[str, Any]:
    """Label an edge, and say what the downstream's lineage recorded about the upstream."""
    info: dict[str, Any] = {"label": EDGE_LABELS.get((str(up.get("kind")), str(down.get("kind"))), "uses")}
    lineage = (down.get("status") or {}).get("lineage") or {}
    name = (up.get("metadata") or {}).get("name")
    if up.get("kind") == "Dataset" and (lineage.get("dataset") or {}).get("name") == name:
        used = lineage["dataset"].get("digest")
        if used:
            info["detail"] = short_digest(str(used))
            now = (up.get("status") or {}).get("digest")
            info["stale"] = bool(now and now != used)
    elif up.get("kind") == "Model" and (lineage.get("baseModel") or {}).get("name") == name:
        base = lineage["baseModel"]
        if base.get("imageId"):
            used = str(base["imageId"])
            info["detail"] = short_digest(used) if ":" in used else f"image {used[:12]}"
        elif base.get("image"):
            info["detail"] = str(base["image"]).rsplit("/", 1)[-1][:24]
    return info


def build_graph(documents: list[dict[str, Any]], focus: ObjectKey) -> dict[str, Any]:
    """Nodes (with column, readiness and details) and labelled edges around `focus`."""
    docs = {doc_key(d): d for d in documents}
    if focus not in docs:
        return {"focus": node_id(focus), "nodes": [], "edges": []}
    all_edges = edges_of(docs)
    keys = component(focus, all_edges)
    inside = set(keys)
    edges = [(a, b) for a, b in all_edges if a in inside and b in inside]
    depth = layers(keys, edges)
    nodes = []
    for key in sorted(keys, key=lambda k: (depth[k], k)):
        status = docs[key].get("status") or {}
        nodes.append({"id": node_id(key), "kind": key[0], "namespace": key[1], "name": key[2],
                      "layer": depth[key], "ready": bool(status.get("ready")),
                      "reason": ready_reason(status, "Pending"), "details": node_details(docs[key])})
    out_edges = [{"from": node_id(a), "to": node_id(b), **edge_info(docs[a], docs[b])} for a, b in edges]
    return {"focus": node_id(focus), "nodes": nodes, "edges": out_edges, "truncated": len(keys) >= MAX_NODES}
