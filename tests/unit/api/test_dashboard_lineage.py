"""The lineage graph the object pages draw (api/dashboard/lineage.py)."""

from __future__ import annotations

from typing import Any

from substratus.api.dashboard.lineage import MAX_NODES, build_graph

DIGEST = "sha256:" + "ab" * 32


def doc(kind: str, name: str, spec: dict[str, Any], **status: Any) -> dict[str, Any]:
    ready = status.pop("ready", True)
    return {"apiVersion": "substratus.ai/v1", "kind": kind, "metadata": {"name": name, "namespace": "default"},
            "spec": spec, "status": {"ready": ready, "conditions": [
                {"type": "Ready", "status": "True" if ready else "False", "reason": "Ready" if ready else "Building"}],
                **status}}


def world() -> list[dict[str, Any]]:
    lineage = {"baseModel": {"name": "base", "image": "localhost/substratus/model-default-base:1",
                             "imageId": "sha256:" + "cd" * 32},
               "dataset": {"name": "data", "digest": DIGEST}, "params": {"epochs": 1}}
    return [
        doc("Dataset", "data", {"filename": "d.jsonl"}, digest=DIGEST, source={"description": "dir x", "revision": "r",
                                                                            "gitCommit": "0123456789abcdef"}),
        doc("Model", "base", {"source": {"dir": "x"}}, containerImage="localhost/substratus/model-default-base:1"),
        doc("Model", "tuned", {"source": {"modelName": "base"},
                               "training": {"datasetName": "data", "params": {"epochs": 1}}}, lineage=lineage),
        doc("ModelServer", "tuned", {"modelName": "tuned"}),
        doc("Notebook", "tuned", {"modelName": "tuned"}),
        doc("Notebook", "data-nb", {"datasetName": "data"}, ready=False),
        doc("Model", "unrelated", {"source": {"dir": "y"}}),
    ]


def ids(graph: dict[str, Any]) -> set[str]:
    return {n["id"] for n in graph["nodes"]}


def test_a_trained_model_shows_where_it_came_from_and_what_uses_it() -> None:
    g = build_graph(world(), ("Model", "default", "tuned"))
    assert g["focus"] == "Model/default/tuned"
    assert "Model/default/unrelated" not in ids(g)
    layers = {n["id"]: n["layer"] for n in g["nodes"]}
    assert layers["Dataset/default/data"] == 0 and layers["Model/default/base"] == 0
    assert layers["Model/default/tuned"] == 1
    assert layers["ModelServer/default/tuned"] == 2 and layers["Notebook/default/tuned"] == 2
    edges = {(e["from"], e["to"]): e for e in g["edges"]}
    assert edges[("Dataset/default/data", "Model/default/tuned")]["label"] == "training data"
    assert edges[("Dataset/default/data", "Model/default/tuned")]["detail"] == "sha256:" + "ab" * 6
    assert edges[("Dataset/default/data", "Model/default/tuned")]["stale"] is False
    assert edges[("Model/default/base", "Model/default/tuned")]["label"] == "base model"
    assert edges[("Model/default/base", "Model/default/tuned")]["detail"] == "sha256:" + "cd" * 6
    assert edges[("Model/default/tuned", "ModelServer/default/tuned")]["label"] == "serves"
    assert edges[("Model/default/tuned", "Notebook/default/tuned")]["label"] == "opens"


def test_the_connected_part_includes_siblings_through_shared_ancestors() -> None:
    g = build_graph(world(), ("ModelServer", "default", "tuned"))
    assert "Notebook/default/data-nb" in ids(g) and "Dataset/default/data" in ids(g)
    nb = next(n for n in g["nodes"] if n["id"] == "Notebook/default/data-nb")
    assert nb["ready"] is False and nb["reason"] == "Building"


def test_nodes_carry_what_people_look_for() -> None:
    g = build_graph(world(), ("Model", "default", "tuned"))
    details = {n["id"]: dict(map(tuple, n["details"])) for n in g["nodes"]}
    assert details["Dataset/default/data"] == {"commit": "0123456789ab", "data": "sha256:" + "ab" * 6}
    assert details["Model/default/base"]["image"] == "localhost/substratus/model-default-base:1"
    assert details["Model/default/tuned"]["params"] == "epochs=1"


def test_an_edge_is_stale_when_the_dataset_changed_after_training() -> None:
    docs = world()
    docs[0]["status"]["digest"] = "sha256:" + "ef" * 32
    g = build_graph(docs, ("Model", "default", "tuned"))
    edge = next(e for e in g["edges"] if e["from"] == "Dataset/default/data")
    assert edge["stale"] is True


def test_an_object_alone_and_a_missing_one() -> None:
    alone = build_graph(world(), ("Model", "default", "unrelated"))
    assert ids(alone) == {"Model/default/unrelated"} and alone["edges"] == []
    assert build_graph(world(), ("Model", "default", "nope"))["nodes"] == []


def test_references_to_missing_objects_and_cycles_do_not_break_it() -> None:
    docs = [doc("Model", "a", {"source": {"modelName": "b"}}), doc("Model", "b", {"source": {"modelName": "a"}}),
            doc("ModelServer", "s", {"modelName": "ghost"})]
    g = build_graph(docs, ("Model", "default", "a"))
    assert ids(g) == {"Model/default/a", "Model/default/b"} and len(g["edges"]) == 2
    assert all(0 <= n["layer"] <= 2 for n in g["nodes"])
    assert build_graph(docs, ("ModelServer", "default", "s"))["edges"] == []


def test_big_graphs_are_capped() -> None:
    docs = [doc("Model", "base", {"source": {"dir": "x"}})]
    docs += [doc("ModelServer", f"s{i}", {"modelName": "base"}) for i in range(MAX_NODES + 20)]
    g = build_graph(docs, ("Model", "default", "base"))
    assert len(g["nodes"]) == MAX_NODES and g["truncated"] is True
    assert all(e["from"] in ids(g) and e["to"] in ids(g) for e in g["edges"])
