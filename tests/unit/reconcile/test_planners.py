"""The planners are pure: plain objects in, actions, status and the next state out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from substratus.reconcile import jobs as P
from substratus.reconcile import workloads as W
from substratus.reconcile.actions import (
    Allocate,
    BuildImage,
    BuildTrained,
    CheckContract,
    CollectJob,
    RemoveContainer,
    StartContainer,
)
from substratus.reconcile.layout import Layout
from substratus.reconcile.state import DatasetState, Failure, ModelState, NotebookState, ServerState, Source
from substratus.resources.manifest import parse_object
from substratus.resources.status import Reason, Status
from substratus.runtimes.base import ContainerState

L = Layout(Path("/home/sub"))
FACTS = P.Facts(layout=L, instance="abc123")
SRC = Source(revision="abc", context="/ctx", description="dir /ctx", dir="/ctx")


def obj(kind: str, spec: dict[str, Any], name: str = "x") -> Any:
    return parse_object({"apiVersion": "substratus.ai/v1", "kind": kind, "metadata": {"name": name}, "spec": spec})


def container(name: str, *, running: bool = True, code: int | None = None, **labels: str) -> ContainerState:
    return ContainerState(name=name, id="1", image="i", labels={f"substratus.ai/{k}": v for k, v in labels.items()},
                          running=running, exit_code=code, status="running" if running else "exited")


def snap(**kw: Any) -> P.Snapshot:
    return P.Snapshot(now=kw.pop("now", 0.0), **kw)


DS = obj("Dataset", {"filename": "d.jsonl", "source": {"dir": "/ctx"}}, "ds")
DS_STATE = DatasetState(source=SRC)


def ds_tag() -> str:
    [build] = P.plan_dataset(DS, DS_STATE, snap(), FACTS).actions
    assert isinstance(build, BuildImage)
    return build.tag


def test_dataset_builds_first() -> None:
    plan = P.plan_dataset(DS, DS_STATE, snap(), FACTS)
    [action] = plan.actions
    assert isinstance(action, BuildImage) and action.source == SRC
    assert plan.reason is Reason.BUILDING and not plan.ready


def test_build_in_flight_is_not_started_twice() -> None:
    key = P.plan_dataset(DS, DS_STATE, snap(), FACTS).actions[0].key
    plan = P.plan_dataset(DS, DS_STATE, snap(in_flight=frozenset({key})), FACTS)
    assert plan.actions == [] and plan.reason is Reason.BUILDING


def test_built_image_is_checked_while_the_load_starts() -> None:
    tag = ds_tag()
    plan = P.plan_dataset(DS, DS_STATE, snap(images={tag: "id1"}), FACTS)
    check, start = plan.actions
    assert isinstance(check, CheckContract) and check.image == tag and check.kind == "Dataset"
    assert isinstance(start, StartContainer)
    assert start.spec.command == ["load.sh"] and start.spec.env == {"LOAD_DATA_PATH": "/data/d.jsonl"}
    assert {m.target for m in start.spec.mounts} == {"/data", "/dataset/logs"}
    assert plan.reason is Reason.LOADING


def test_finished_load_is_collected_then_ready_once_verified() -> None:
    tag = ds_tag()
    state = DatasetState(source=SRC, verified=[tag])
    name = P.plan_dataset(DS, state, snap(images={tag: "id1"}), FACTS).actions[0].spec.name  # type: ignore[union-attr]
    exited = {name: container(name, running=False, code=0, role="load")}
    [collect] = P.plan_dataset(DS, state, snap(images={tag: "id1"}, containers=exited), FACTS).actions
    assert isinstance(collect, CollectJob) and collect.exit_code == 0
    run_dir = str(collect.run_dir)
    done = P.plan_dataset(DS, state, snap(images={tag: "id1"}, succeeded=frozenset({run_dir})), FACTS)
    assert done.ready and done.published.url and done.published.url.endswith("/data/d.jsonl")
    unverified = P.plan_dataset(DS, DS_STATE, snap(images={tag: "id1"}, succeeded=frozenset({run_dir}),
                                                   in_flight=frozenset({f"check:{tag}"})), FACTS)
    assert not unverified.ready and unverified.reason is Reason.BUILDING


def test_remembered_failure_is_reported_not_retried() -> None:
    tag = ds_tag()
    state = DatasetState(source=SRC, failures={f"check:{tag}": Failure(reason=Reason.CONTRACT_VIOLATION,
                                                                       message="WORKDIR is /")})
    plan = P.plan_dataset(DS, state, snap(images={tag: "id1"}), FACTS)
    assert plan.actions == [] and plan.reason is Reason.CONTRACT_VIOLATION and "WORKDIR" in plan.message


def test_a_planner_is_deterministic() -> None:
    one = P.plan_dataset(DS, DS_STATE, snap(), FACTS)
    two = P.plan_dataset(DS, DS_STATE, snap(), FACTS)
    assert one == two


TRAINED = obj("Model", {"source": {"modelName": "base"},
                        "training": {"datasetName": "ds", "params": {"epochs": 2, "batchSize": 4, "dataLimit": 10}}})
READY_DS = P.Dep(exists=True, current=True, status=Status(ready=True, url="file:///home/sub/run1/data/d.jsonl",
                                                          digest="sha256:" + "0" * 64))
READY_BASE = P.Dep(exists=True, current=True, status=Status(ready=True, container_image="base:1"))


def failed_dep(reason: Reason) -> P.Dep:
    from substratus.resources.status import Condition

    cond = Condition(type="Ready", status="False", reason=reason.value, message="it broke")
    return P.Dep(exists=True, current=True, status=Status(conditions=[cond]))


def test_model_waits_for_its_base_and_dataset() -> None:
    plan = P.plan_model(TRAINED, ModelState(), snap(), FACTS, P.Dep(exists=False), READY_DS)
    assert plan.reason is Reason.WAITING_FOR_MODEL and "does not exist" in plan.message
    plan = P.plan_model(TRAINED, ModelState(), snap(), FACTS, READY_BASE, failed_dep(Reason.LOADING))
    assert plan.reason is Reason.WAITING_FOR_DATASET
    plan = P.plan_model(TRAINED, ModelState(), snap(), FACTS, READY_BASE, failed_dep(Reason.LOAD_FAILED))
    assert plan.reason is Reason.DEPENDENCY_FAILED and "it broke" in plan.message


def test_training_gets_the_contract_environment() -> None:
    plan = P.plan_model(TRAINED, ModelState(), snap(), FACTS, READY_BASE, READY_DS)
    [start] = plan.actions
    assert isinstance(start, StartContainer)
    assert start.spec.image == "base:1" and start.spec.command == ["train.sh"]
    assert start.spec.env["TRAIN_DATA_PATH"] == "/data/d.jsonl"
    assert (start.spec.env["TRAIN_EPOCHS"], start.spec.env["TRAIN_BATCH_SIZE"], start.spec.env["TRAIN_DATA_LIMIT"]) \
        == ("2", "4", "10")
    data = next(m for m in start.spec.mounts if m.target == "/data")
    assert data.read_only and data.source == "/home/sub/run1/data"
    assert {m.target for m in start.spec.mounts} == {"/data", "/model/trained", "/model/logs"}
    assert start.spec.network is False, "issue 25 item 8: a trainer reaches no other container"
    assert plan.reason is Reason.TRAINING


def test_after_training_the_trained_image_is_built_with_lineage_then_used() -> None:
    [first] = P.plan_model(TRAINED, ModelState(), snap(), FACTS, READY_BASE, READY_DS).actions
    assert isinstance(first, StartContainer)
    run_dir = str(Path(first.spec.mounts[1].source).parent)
    plan = P.plan_model(TRAINED, ModelState(), snap(succeeded=frozenset({run_dir}), images={"base:1": "b1"}), FACTS,
                        READY_BASE, READY_DS)
    [build] = plan.actions
    assert isinstance(build, BuildTrained) and build.base == "base:1"
    assert build.labels["org.opencontainers.image.base.digest"] == "b1"
    done = P.plan_model(TRAINED, ModelState(), snap(images={build.tag: "t1", "base:1": "b1"}), FACTS,
                        READY_BASE, READY_DS)
    assert done.ready and done.published.container_image == build.tag
    assert done.published.lineage is not None and done.published.lineage.dataset.digest == READY_DS.status.digest


def test_new_params_mean_a_new_training_run_and_old_job_is_removed() -> None:
    [first] = P.plan_model(TRAINED, ModelState(), snap(), FACTS, READY_BASE, READY_DS).actions
    assert isinstance(first, StartContainer)
    changed = obj("Model", {"source": {"modelName": "base"}, "training": {"datasetName": "ds", "params": {"epochs": 3}}})
    old = {first.spec.name: container(first.spec.name, role="train")}
    plan = P.plan_model(changed, ModelState(), snap(containers=old), FACTS, READY_BASE, READY_DS)
    kinds = [type(a) for a in plan.actions]
    assert RemoveContainer in kinds and StartContainer in kinds
    new = next(a for a in plan.actions if isinstance(a, StartContainer))
    assert new.spec.name != first.spec.name and new.spec.env["TRAIN_EPOCHS"] == "3"


def test_model_without_training_serves_its_base_image() -> None:
    m = obj("Model", {"source": {"modelName": "base"}})
    plan = P.plan_model(m, ModelState(), snap(), FACTS, READY_BASE, None)
    assert plan.ready and plan.published.container_image == "base:1"


def test_gpu_preferred_and_present_is_passed_through() -> None:
    assert P.wants_gpu(("GPU", "CPU"), True) is True
    assert P.wants_gpu(("GPU", "CPU"), False) is False  # falls back to CPU
    assert P.wants_gpu(("CPU",), True) is False
    assert P.wants_gpu(("GPU",), False) is True  # GPU-only tries, and the engine says why it cannot


SERVER = obj("ModelServer", {"modelName": "m"}, "s")
MODEL = P.Dep(exists=True, current=True, status=Status(ready=True, container_image="img:1"))


def test_server_port_is_chosen_by_the_executor_first() -> None:
    plan = W.plan_server(SERVER, ServerState(), snap(), FACTS, MODEL)
    assert plan.actions == [Allocate("port")] and plan.requeue_after == 0


def test_server_starts_with_published_port_then_becomes_ready_on_docs() -> None:
    plan = W.plan_server(SERVER, ServerState(port=5000), snap(), FACTS, MODEL)
    [start] = plan.actions
    assert isinstance(start, StartContainer)
    assert start.spec.ports == {8080: 5000} and start.spec.command == ["serve.sh"] and start.spec.secret_env == {}
    c = container(start.spec.name, role="server", image="img:1")
    state = ServerState(port=5000, started_at=0)
    plan = W.plan_server(SERVER, state, snap(now=1, containers={c.name: c}), FACTS, MODEL)
    assert plan.reason is Reason.NOT_READY and not plan.ready and plan.requeue_after == 0.1
    plan = W.plan_server(SERVER, state, snap(now=2, containers={c.name: c}, probes={c.name: True}), FACTS, MODEL)
    assert plan.ready and plan.published.url == "http://127.0.0.1:5000"


def test_server_published_beyond_loopback_gets_a_token() -> None:
    exposed = obj("ModelServer", {"modelName": "m", "address": "0.0.0.0"}, "s")
    plan = W.plan_server(exposed, ServerState(port=5000), snap(), FACTS, MODEL)
    assert plan.actions == [Allocate("token")]
    [start] = W.plan_server(exposed, ServerState(port=5000, token="secret"), snap(), FACTS, MODEL).actions
    assert isinstance(start, StartContainer)
    assert start.spec.secret_env == {"SUBSTRATUS_SERVER_TOKEN": "secret"} and start.spec.publish_address == "0.0.0.0"
    assert "secret" not in str(start.spec.env)


def test_server_that_never_answers_fails_after_the_timeout() -> None:
    name = W.plan_server(SERVER, ServerState(port=1), snap(), FACTS, MODEL).actions[0].spec.name  # type: ignore
    c = container(name, role="server", image="img:1")
    plan = W.plan_server(SERVER, ServerState(port=1, started_at=0),
                         snap(now=700, containers={c.name: c}, log_tails={c.name: "boom"}), FACTS, MODEL)
    assert plan.reason is Reason.SERVE_FAILED and "boom" in plan.message and plan.requeue_after == W.READY_PERIOD


def test_server_rolls_onto_a_new_model_image() -> None:
    name = W.plan_server(SERVER, ServerState(port=1), snap(), FACTS, MODEL).actions[0].spec.name  # type: ignore
    c = container(name, role="server", image="img:0")
    plan = W.plan_server(SERVER, ServerState(port=1), snap(containers={c.name: c}), FACTS, MODEL)
    assert [type(a) for a in plan.actions] == [RemoveContainer] and plan.reason is Reason.ROLLING


def test_exited_server_is_restarted_with_backoff_and_log_tail() -> None:
    name = W.plan_server(SERVER, ServerState(port=1), snap(), FACTS, MODEL).actions[0].spec.name  # type: ignore
    c = container(name, running=False, code=3, role="server", image="img:1")
    s = snap(now=100, containers={c.name: c}, log_tails={c.name: "Traceback: oops"})
    plan = W.plan_server(SERVER, ServerState(port=1), s, FACTS, MODEL)
    assert plan.actions == [] and plan.reason is Reason.SERVER_EXITED and "oops" in plan.message
    assert plan.state.next_restart_at == 100 + W.RESTART_BACKOFF[0]  # type: ignore[union-attr]
    plan = W.plan_server(SERVER, ServerState(port=1, next_restart_at=101), snap(now=102, containers={c.name: c}),
                         FACTS, MODEL)
    assert [type(a) for a in plan.actions] == [RemoveContainer] and plan.state.restarts == 1  # type: ignore
    plan = W.plan_server(SERVER, ServerState(port=1, restarts=3), s, FACTS, MODEL)
    assert plan.reason is Reason.CRASH_LOOP_BACK_OFF


def test_notebook_token_is_a_secret_env_and_suspend_stops_it() -> None:
    nb = obj("Notebook", {"modelName": "m"}, "n")
    plan = W.plan_notebook(nb, NotebookState(), snap(), FACTS, MODEL)
    assert set(plan.actions) == {Allocate("port"), Allocate("token")}
    state = NotebookState(port=7000, token="tok")
    [start] = W.plan_notebook(nb, state, snap(), FACTS, MODEL).actions
    assert isinstance(start, StartContainer)
    assert start.spec.secret_env == {"JUPYTER_TOKEN": "tok"} and start.spec.env == {}
    assert start.spec.ports == {8888: 7000}
    c = container(start.spec.name, role="notebook", image="img:1")
    ready = W.plan_notebook(nb, state, snap(now=1, containers={c.name: c}, probes={c.name: True}), FACTS, MODEL)
    assert ready.ready and ready.published.url == "http://127.0.0.1:7000/?token=tok"
    suspended = obj("Notebook", {"modelName": "m", "suspend": True}, "n")
    plan = W.plan_notebook(suspended, state, snap(now=2, containers={c.name: c}), FACTS, MODEL)
    assert [type(a) for a in plan.actions] == [RemoveContainer] and plan.reason is Reason.SUSPENDED


def test_a_container_being_removed_is_neither_alive_nor_started_again() -> None:
    [start] = W.plan_server(SERVER, ServerState(port=5000), snap(), FACTS, MODEL).actions
    assert isinstance(start, StartContainer)
    c = container(start.spec.name, role="server", image="img:1")
    going = snap(now=1, containers={c.name: c}, probes={c.name: True}, in_flight=frozenset({f"remove:{c.name}"}))
    plan = W.plan_server(SERVER, ServerState(port=5000, started_at=0), going, FACTS, MODEL)
    assert not plan.ready and plan.actions == [] and plan.reason is Reason.STARTING
    gone = snap(now=1, in_flight=frozenset({f"remove:{c.name}"}))
    assert W.plan_server(SERVER, ServerState(port=5000), gone, FACTS, MODEL).actions == []


def test_training_starts_beside_the_base_models_contract_check_and_counts_only_after_it() -> None:
    from substratus.resources.status import Condition

    checking = P.Dep(exists=True, current=True, status=Status(
        container_image="base:1", conditions=[Condition(type="Ready", status="Unknown", reason="Building")]))
    [start] = P.plan_model(TRAINED, ModelState(), snap(), FACTS, checking, READY_DS).actions
    assert isinstance(start, StartContainer) and start.spec.image == "base:1"
    run_dir = str(Path(start.spec.mounts[1].source).parent)
    trained = P.plan_model(TRAINED, ModelState(), snap(succeeded=frozenset({run_dir})), FACTS, checking, READY_DS)
    [build] = trained.actions
    assert isinstance(build, BuildTrained)
    built = P.plan_model(TRAINED, ModelState(), snap(images={build.tag: "t"}, succeeded=frozenset({run_dir})), FACTS,
                         checking, READY_DS)
    assert not built.ready and built.actions == [], "not trained until the base passed its check"
    failed = failed_dep(Reason.CONTRACT_VIOLATION)
    job = {start.spec.name: container(start.spec.name, role="train")}
    plan = P.plan_model(TRAINED, ModelState(), snap(containers=job), FACTS, failed, READY_DS)
    assert plan.reason is Reason.DEPENDENCY_FAILED
    assert [type(a) for a in plan.actions] == [RemoveContainer], "the job on a base that failed is stopped"


def test_a_model_publishes_its_image_while_it_is_checked() -> None:
    m = obj("Model", {"source": {"dir": "/ctx"}}, "m")
    state = ModelState(source=SRC)
    [build] = P.plan_model(m, state, snap(), FACTS, None, None).actions
    assert isinstance(build, BuildImage)
    checking = P.plan_model(m, state, snap(images={build.tag: "i"}), FACTS, None, None)
    assert checking.published.container_image == build.tag and not checking.ready
