"""The operator's work queue, built plainly (no kopf, no threads): watch events queue keys, a pass's own
writes coming back queue nothing, a reference publishing something new queues its dependents, and
`requeue_after` is honoured with the operator's floor."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest

from substratus.kube.manager import MIN_REQUEUE, Manager, requeue_delay
from substratus.kube.reconciler import Reconciler
from substratus.reconcile.conditions import ready_reason
from substratus.resources.objectkey import ObjectKey
from substratus.runtimes.kubernetes.runtime import KubernetesRuntime
from substratus.runtimes.kubernetes.settings import KubeSettings
from tests.unit.fakes.kubeapi import MemoryApi

CR = "substratus.ai/v1"
NB = ObjectKey("Notebook", "default", "nb")
MODEL = ObjectKey("Model", "default", "m")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def world(tmp_path: Path) -> tuple[Manager, MemoryApi, Clock]:
    api, clock = MemoryApi(), Clock()

    def make(wake: Any) -> Reconciler:
        return Reconciler(api, KubernetesRuntime(api, KubeSettings()), None,  # type: ignore[arg-type]
                          scratch=tmp_path, wake=wake, clock=clock, workers=0)
    return Manager(make, clock=clock), api, clock


def create(api: MemoryApi, key: ObjectKey, spec: dict[str, Any]) -> dict[str, Any]:
    return api.create({"apiVersion": CR, "kind": key.kind, "metadata": {"name": key.name, "namespace": key.namespace},
                       "spec": spec})


def body(api: MemoryApi, key: ObjectKey) -> dict[str, Any]:
    found = api.get(CR, key.kind, key.name, key.namespace)
    assert found is not None
    return found


def drain(m: Manager) -> list[ObjectKey]:
    """Every pass due now; the keys passed over, in order."""
    passed = []
    while (key := m.queue.get(block=False)) is not None:
        try:
            m.process(key)
        finally:
            m.queue.done(key)
        passed.append(key)
    return passed


def test_an_event_queues_a_pass_and_its_own_writes_coming_back_queue_nothing(world: Any) -> None:
    m, api, _ = world
    m.on_object_event(NB, None, create(api, NB, {"modelName": "m", "suspend": True}))  # kopf's initial list
    assert drain(m) == [NB]
    assert ready_reason(body(api, NB)["status"]) == "Suspended"
    echo = body(api, NB)  # the status and state we wrote, watched back
    gets = api.calls["get"]
    m.on_object_event(NB, "MODIFIED", echo)
    assert drain(m) == [] and api.calls["get"] == gets, "an object at rest costs nothing"
    with_finalizer = body(api, NB)
    with_finalizer["metadata"]["finalizers"] = ["substratus.ai/finalizer"]
    m.on_object_event(NB, "MODIFIED", with_finalizer)
    between = body(api, NB)  # our state annotation written, our status not yet: the first of our two writes
    between.pop("status")
    m.on_object_event(NB, "MODIFIED", between)
    assert drain(m) == []
    api.patch(CR, "Notebook", "nb", {"spec": {"suspend": False}}, "default")  # someone changed it
    m.on_object_event(NB, "MODIFIED", body(api, NB))
    assert drain(m) == [NB]
    assert ready_reason(body(api, NB)["status"]) == "WaitingForModel"


def test_a_reference_publishing_something_new_queues_its_dependents(world: Any) -> None:
    m, api, _ = world
    m.on_object_event(NB, None, create(api, NB, {"modelName": "m"}))
    m.on_object_event(MODEL, None, create(api, MODEL, {"source": {"dir": "/m"}}))
    assert sorted(drain(m)) == [MODEL, NB]
    api.patch(CR, "Model", "m", {"status": {"ready": True, "observedGeneration": 1, "containerImage": "i:1"}},
              "default", subresource="status")
    m.on_object_event(MODEL, "MODIFIED", body(api, MODEL))
    assert NB in drain(m)


def test_a_deleted_object_is_forgotten_and_a_childs_event_queues_its_owner(world: Any) -> None:
    m, api, _ = world
    m.on_object_event(NB, None, create(api, NB, {"modelName": "m", "suspend": True}))
    drain(m)
    assert m.known() == [NB]
    m.on_object_event(NB, "DELETED", body(api, NB))
    assert m.known() == [] and drain(m) == []
    m.on_child_event({"substratus.ai/kind": "Notebook", "substratus.ai/namespace": "default",
                      "substratus.ai/name": "nb"})
    m.on_child_event({"app": "something-else"})
    assert drain(m) == [NB]


def test_requeue_after_has_the_operators_floor_and_a_failing_pass_backs_off(world: Any) -> None:
    m, api, clock = world
    assert requeue_delay(None) is None and requeue_delay(0.0) == 0.0
    assert requeue_delay(0.1) == MIN_REQUEUE and requeue_delay(12.0) == 12.0
    calls: list[ObjectKey] = []

    def failing(key: ObjectKey) -> Optional[float]:
        calls.append(key)
        raise OSError("the API server went away")
    m.reconciler.reconcile = failing  # type: ignore[method-assign]
    m.queue.add(NB)
    drain(m)
    assert calls == [NB] and m.queue.failures(NB) == 1 and drain(m) == []
    clock.t += 0.05
    assert drain(m) == [NB] and m.queue.failures(NB) == 2
