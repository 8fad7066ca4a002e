"""The reconcile core both backends run: `plan_for` with plain objects and either backend's lookup,
the reference check naming the field on both backends, the dependency index."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest

from substratus.cli.cluster import ClusterClient
from substratus.errors import ValidationError
from substratus.kube.reconciler import Reconciler
from substratus.local.reconciler import LocalReconciler
from substratus.local.store import Record, Store
from substratus.reconcile.conditions import ready_condition, ready_reason
from substratus.reconcile.core import Published, check_references, dep, once_per_pass, plan_for
from substratus.reconcile.index import DependencyIndex
from substratus.reconcile.layout import Layout
from substratus.reconcile.plan import Facts, Snapshot
from substratus.reconcile.state import NotebookState, ServerState
from substratus.resources.manifest import parse_object
from substratus.resources.objectkey import ObjectKey
from substratus.resources.status import Reason
from substratus.runtimes.kubernetes.runtime import KubernetesRuntime
from substratus.runtimes.kubernetes.settings import KubeSettings
from tests.unit.fakes.kubeapi import MemoryApi

FACTS = Facts(layout=Layout(Path("/home/sub")), instance="abc", gpu=True)
IMAGE = "localhost/substratus/m:1"
READY = {"ready": True, "observedGeneration": 2, "containerImage": IMAGE, "computeTypes": ["GPU", "CPU"],
         "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]}
MODEL = ObjectKey("Model", "default", "m")


def obj(kind: str, spec: dict[str, Any], name: str = "x") -> Any:
    return parse_object({"apiVersion": "substratus.ai/v1", "kind": kind, "metadata": {"name": name}, "spec": spec})


SERVER = obj("ModelServer", {"modelName": "m"}, "srv")


def in_a_dict(objects: dict[ObjectKey, Published]) -> Any:
    return lambda key: objects.get(key)


# ---- plan_for -----------------------------------------------------------------------------------

def test_plan_for_sees_a_reference_only_through_its_published_status() -> None:
    """The server runs the model's image on a GPU because the model publishes both, not from its spec."""
    plan = plan_for(SERVER, ServerState(port=20000), Snapshot(now=0), FACTS, in_a_dict({MODEL: Published(2, READY)}))
    [start] = plan.actions
    assert start.spec.image == IMAGE and start.spec.gpu  # type: ignore[attr-defined]
    cpu_only = {**READY, "computeTypes": ["CPU"]}
    [start] = plan_for(SERVER, ServerState(port=20000), Snapshot(now=0), FACTS,
                       in_a_dict({MODEL: Published(2, cpu_only)})).actions
    assert not start.spec.gpu  # type: ignore[attr-defined]


@pytest.mark.parametrize("found, reason, says", [
    (None, Reason.WAITING_FOR_MODEL, "does not exist"),
    (Published(3, READY), Reason.WAITING_FOR_MODEL, "not ready yet"),           # re-applied: status is of gen 2
    (Published(2, READY, deleting=True), Reason.WAITING_FOR_MODEL, "does not exist"),
    (Published(2, {**READY, "ready": False, "conditions": [{"type": "Ready", "status": "False",
                                                           "reason": "BuildFailed", "message": "no"}]}),
     Reason.DEPENDENCY_FAILED, "failed (BuildFailed): no"),
])
def test_plan_for_waits_on_a_reference_that_is_not_there_current_or_ready(found: Optional[Published], reason: Reason,
                                                                          says: str) -> None:
    lookup = in_a_dict({MODEL: found} if found else {})
    plan = plan_for(SERVER, ServerState(), Snapshot(now=0), FACTS, lookup)
    assert plan.actions == [] and plan.reason is reason and says in plan.message


def test_the_same_plan_from_the_local_store_and_from_the_api_server(tmp_path: Path) -> None:
    """The only backend difference in planning is the lookup: the store's record or the custom resource."""
    store = Store(tmp_path / "db.sqlite")
    store.put_many([Record("Model", "default", "m", 2, {"spec": {"source": {"dir": "/m"}}}, READY)], "now")
    local = LocalReconciler(store, None, None, FACTS.layout, FACTS, clock=lambda: 0.0)  # type: ignore[arg-type]
    api = MemoryApi()
    api.create({"apiVersion": "substratus.ai/v1", "kind": "Model",
                "metadata": {"name": "m", "namespace": "default"}, "spec": {"source": {"dir": "/m"}}})
    api.patch("substratus.ai/v1", "Model", "m", {"spec": {"compute": {"types": ["CPU"]}}}, "default")  # generation 2
    api.patch("substratus.ai/v1", "Model", "m", {"status": READY}, "default", subresource="status")
    cluster = Reconciler(api, KubernetesRuntime(api, KubeSettings()), None, scratch=tmp_path, workers=0)  # type: ignore
    assert local.lookup(MODEL) == cluster.lookup(MODEL) == Published(2, READY)
    plans = [plan_for(SERVER, ServerState(port=20000), Snapshot(now=0), FACTS, lookup)
             for lookup in (local.lookup, cluster.lookup)]
    assert plans[0] == plans[1] and plans[0].actions
    assert local.lookup(ObjectKey("Model", "default", "nope")) is None is cluster.lookup(ObjectKey("Model", "default",
                                                                                                   "nope"))


def test_one_pass_asks_for_each_reference_once() -> None:
    asked: list[ObjectKey] = []

    def lookup(key: ObjectKey) -> Optional[Published]:
        asked.append(key)
        return Published(2, READY)
    once = once_per_pass(lookup)
    assert dep(once, MODEL) == dep(once, MODEL) and asked == [MODEL]


def test_a_notebook_on_a_dataset_mounts_what_the_dataset_publishes() -> None:
    nb = obj("Notebook", {"datasetName": "d"}, "nb")
    data = {"ready": True, "observedGeneration": 1, "containerImage": "localhost/substratus/d:1",
            "url": "file:///home/sub/objects/dataset/default/d/r1/data/f.jsonl"}
    plan = plan_for(nb, NotebookState(port=20001, token="t"), Snapshot(now=0), FACTS,
                    in_a_dict({ObjectKey("Dataset", "default", "d"): Published(1, data)}))
    [start] = plan.actions
    assert start.spec.image == "localhost/substratus/d:1"  # type: ignore[attr-defined]
    assert [m.source for m in start.spec.mounts] == ["/home/sub/objects/dataset/default/d/r1/data"]  # type: ignore


def test_urls_are_the_backends() -> None:
    """Locally a host port (the notebook's with its token); another backend says its own (Facts.urls)."""
    from substratus.kube.reconciler import ServiceUrls
    assert FACTS.urls.server(SERVER.key, "127.0.0.1", 20000) == "http://127.0.0.1:20000"
    assert FACTS.urls.notebook(ObjectKey("Notebook", "default", "nb"), 20001, "t") == "http://127.0.0.1:20001/?token=t"
    from substratus.kube.reconciler import service_url

    assert ServiceUrls().server(SERVER.key, "127.0.0.1", 8080) == service_url("ModelServer", "default", "srv")
    assert ServiceUrls().notebook(ObjectKey("Notebook", "default", "nb"), 8888, "t") == \
        service_url("Notebook", "default", "nb")


# ---- the reference check ------------------------------------------------------------------------

def refs_manifest() -> list[Any]:
    return [obj("Model", {"source": {"modelName": "base"}, "training": {"datasetName": "missing"}}, "tuned"),
            obj("Model", {"source": {"dir": "/m"}}, "base"),
            obj("ModelServer", {"modelName": "gone"}, "srv"),
            obj("Notebook", {"modelName": "nb"}, "nb")]


EXPECTED = [
    ("model/tuned: spec.training.datasetName", "Dataset 'missing' does not exist in namespace 'default'"),
    ("modelserver/srv: spec.modelName", "Model 'gone' does not exist in namespace 'default'"),
]


def problems(err: ValidationError) -> list[tuple[str, str]]:
    return [(f, m.split(";")[0]) for f, m in err.problems]


def test_the_reference_check_names_the_field() -> None:
    with pytest.raises(ValidationError) as raised:
        check_references(refs_manifest(), lambda key: False)
    assert problems(raised.value) == [*EXPECTED, ("notebook/nb: spec.modelName",
                                                  "Model 'nb' does not exist in namespace 'default'")]
    assert raised.value.hint == "nothing was applied"
    check_references(refs_manifest()[1:2], lambda key: False)  # nothing referred to: fine
    with pytest.raises(ValidationError) as raised:
        check_references([obj("Model", {"source": {"modelName": "x"}}, "x")], lambda key: True)
    assert raised.value.problems == [("model/x: spec.source.modelName", "model 'x' cannot refer to itself")]


def test_both_backends_name_the_same_field(tmp_path: Path) -> None:
    from tests.unit.fakes.controlplane import Env

    local = Env(tmp_path)
    with pytest.raises(ValidationError) as on_local:
        local.cp.check_references(refs_manifest()[:3])
    with pytest.raises(ValidationError) as on_cluster:
        ClusterClient(MemoryApi()).check_references(refs_manifest()[:3])  # type: ignore[arg-type]
    assert on_local.value.problems == on_cluster.value.problems
    assert problems(on_local.value) == EXPECTED


# ---- the dependency index -----------------------------------------------------------------------

DS = ObjectKey("Dataset", "default", "d")
TUNED = ObjectKey("Model", "default", "tuned")
SRV = ObjectKey("ModelServer", "default", "srv")


def test_dependents_wake_when_what_a_reference_publishes_changes() -> None:
    index = DependencyIndex()
    assert index.observe(TUNED, {"source": {"modelName": "base"}, "training": {"datasetName": "d"}}, {}, 1) == []
    index.observe(SRV, {"modelName": "tuned"}, {}, 1)
    assert index.dependents(DS) == [TUNED] and index.dependents(TUNED) == [SRV]
    assert index.observe(DS, {}, {"ready": False}, 1) == [TUNED]  # first seen
    assert index.observe(DS, {}, {"ready": False}, 1) == []  # our own no-op status patch wakes no one
    assert index.observe(DS, {}, {"ready": False, "progress": {"phase": "load"}}, 1) == []  # nor progress
    assert index.observe(DS, {}, {"ready": True, "url": "s3://b/k"}, 1) == [TUNED]
    assert index.observe(DS, {}, {"ready": True, "url": "s3://b/k"}, 2) == [TUNED]  # re-applied: not current
    assert index.observe(DS, {}, {"ready": True, "url": "s3://b/k"}, 2, deleting=True) == [TUNED]  # going away
    assert index.observe(TUNED, {}, {}, 1, deleted=True) == [SRV]
    assert index.dependents(DS) == [] and index.dependents(TUNED) == [SRV]


def test_a_changed_reference_moves_the_edge() -> None:
    index = DependencyIndex()
    index.observe(SRV, {"modelName": "a"}, {}, 1)
    index.observe(SRV, {"modelName": "b"}, {}, 2)
    assert index.dependents(ObjectKey("Model", "default", "a")) == []
    assert index.dependents(ObjectKey("Model", "default", "b")) == [SRV]


def test_the_ready_condition_of_a_raw_status() -> None:
    status = {"conditions": [{"type": "Built", "reason": "Built"}, {"type": "Ready", "reason": "Serving"}]}
    assert ready_condition(status) == {"type": "Ready", "reason": "Serving"} and ready_reason(status) == "Serving"
    assert ready_condition({}) == {} and ready_reason({"conditions": None}, "Pending") == "Pending"
