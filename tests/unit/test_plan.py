"""The planners are pure: plain objects in, actions and status out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from substratus.controlplane import plan as P
from substratus.controlplane.actions import BuildTrained, CollectJob, EnsureImage, RemoveContainer, StartContainer
from substratus.controlplane.layout import Layout
from substratus.resources.manifest import parse_object
from substratus.runtimes.base import ContainerState

L = Layout(Path("/home/sub"))
SRC = {"source": {"revision": "abc", "context": "/ctx", "description": "dir /ctx"}}


def obj(kind: str, spec: dict[str, Any], name: str = "x") -> Any:
    return parse_object({"apiVersion": "substratus.ai/v1", "kind": kind, "metadata": {"name": name}, "spec": spec})


def container(name: str, *, running: bool = True, code: int | None = None, **labels: str) -> ContainerState:
    return ContainerState(name=name, id="1", image="i", labels={f"substratus.ai/{k}": v for k, v in labels.items()},
                          running=running, exit_code=code, status="running" if running else "exited")


DS = obj("Dataset", {"filename": "d.jsonl", "source": {"dir": "/ctx"}}, "ds")


def test_dataset_builds_first() -> None:
    plan = P.plan_dataset(DS, SRC, P.World(now=0), L)
    [action] = plan.actions
    assert isinstance(action, EnsureImage) and action.kind == "Dataset"
    assert plan.reason == "Building" and not plan.ready


def test_build_in_flight_is_not_started_twice() -> None:
    first = P.plan_dataset(DS, SRC, P.World(now=0), L).actions[0]
    plan = P.plan_dataset(DS, SRC, P.World(now=0, in_flight=frozenset({first.key})), L)
    assert plan.actions == [] and plan.reason == "Building"


def built_world(tag: str, **kw: Any) -> tuple[P.World, dict[str, Any]]:
    return P.World(now=0, images=frozenset({tag}), **kw), {**SRC, "verified": [tag]}


def ds_tag() -> str:
    return P.plan_dataset(DS, SRC, P.World(now=0), L).actions[0].tag


def test_dataset_load_runs_load_sh_with_load_data_path() -> None:
    world, memo = built_world(ds_tag())
    plan = P.plan_dataset(DS, memo, world, L)
    [start] = plan.actions
    assert isinstance(start, StartContainer)
    assert start.spec.command == ["load.sh"]
    assert start.spec.env == {"LOAD_DATA_PATH": "/data/d.jsonl"}
    assert {m.target for m in start.spec.mounts} == {"/data", "/dataset/logs"}
    assert plan.reason == "Loading"


def test_finished_load_is_collected_then_ready() -> None:
    tag = ds_tag()
    world, memo = built_world(tag)
    name = P.plan_dataset(DS, memo, world, L).actions[0].spec.name
    world.containers = {name: container(name, running=False, code=0, role="load")}
    [collect] = P.plan_dataset(DS, memo, world, L).actions
    assert isinstance(collect, CollectJob) and collect.exit_code == 0
    run_dir = collect.run_dir
    done = P.plan_dataset(DS, memo, P.World(now=0, images=frozenset({tag}), succeeded=frozenset({run_dir})), L)
    assert done.ready and done.url and done.url.endswith("/data/d.jsonl")


def test_remembered_failure_is_reported_not_retried() -> None:
    tag = ds_tag()
    memo = {**SRC, "failed": {f"image:{tag}": {"reason": "ContractViolation", "message": "WORKDIR is /"}}}
    plan = P.plan_dataset(DS, memo, P.World(now=0), L)
    assert plan.actions == [] and plan.reason == "ContractViolation" and "WORKDIR" in plan.message


TRAINED = obj("Model", {"source": {"modelName": "base"},
                        "training": {"datasetName": "ds", "params": {"epochs": 2, "batchSize": 4, "dataLimit": 10}}})
READY_DS = P.Dep(exists=True, ready=True, memo={"current": {"runDir": "/home/sub/run1"}},
                 spec={"filename": "d.jsonl"})
READY_BASE = P.Dep(exists=True, ready=True, container_image="base:1")


def test_model_waits_for_its_base_and_dataset() -> None:
    plan = P.plan_model(TRAINED, {}, P.World(now=0), L, P.Dep(exists=False), READY_DS)
    assert plan.reason == "WaitingForModel" and "does not exist" in plan.message
    plan = P.plan_model(TRAINED, {}, P.World(now=0), L, READY_BASE, P.Dep(exists=True, reason="Loading"))
    assert plan.reason == "WaitingForDataset"
    plan = P.plan_model(TRAINED, {}, P.World(now=0), L, READY_BASE, P.Dep(exists=True, reason="LoadFailed"))
    assert plan.reason == "DependencyFailed"


def test_training_gets_the_contract_environment() -> None:
    plan = P.plan_model(TRAINED, {}, P.World(now=0), L, READY_BASE, READY_DS)
    [start] = plan.actions
    assert isinstance(start, StartContainer)
    assert start.spec.image == "base:1" and start.spec.command == ["train.sh"]
    assert start.spec.env["TRAIN_DATA_PATH"] == "/data/d.jsonl"
    assert (start.spec.env["TRAIN_EPOCHS"], start.spec.env["TRAIN_BATCH_SIZE"], start.spec.env["TRAIN_DATA_LIMIT"]) \
        == ("2", "4", "10")
    data = next(m for m in start.spec.mounts if m.target == "/data")
    assert data.read_only and data.source == "/home/sub/run1/data"
    assert {m.target for m in start.spec.mounts} == {"/data", "/model/trained", "/model/logs"}
    assert plan.reason == "Training"


def test_after_training_the_trained_image_is_built_then_used() -> None:
    first = P.plan_model(TRAINED, {}, P.World(now=0), L, READY_BASE, READY_DS)
    run_dir = Path(first.memo["current"]["runDir"])
    plan = P.plan_model(TRAINED, {}, P.World(now=0, succeeded=frozenset({run_dir})), L, READY_BASE, READY_DS)
    [build] = plan.actions
    assert isinstance(build, BuildTrained) and build.base == "base:1"
    done = P.plan_model(TRAINED, {}, P.World(now=0, images=frozenset({build.tag})), L, READY_BASE, READY_DS)
    assert done.ready and done.container_image == build.tag


def test_new_params_mean_a_new_training_run_and_old_job_is_removed() -> None:
    first = P.plan_model(TRAINED, {}, P.World(now=0), L, READY_BASE, READY_DS).actions[0]
    changed = obj("Model", {"source": {"modelName": "base"}, "training": {"datasetName": "ds", "params": {"epochs": 3}}})
    old = {first.spec.name: container(first.spec.name, role="train")}
    plan = P.plan_model(changed, {}, P.World(now=0, containers=old), L, READY_BASE, READY_DS)
    kinds = [type(a) for a in plan.actions]
    assert RemoveContainer in kinds and StartContainer in kinds
    new = next(a for a in plan.actions if isinstance(a, StartContainer))
    assert new.spec.name != first.spec.name and new.spec.env["TRAIN_EPOCHS"] == "3"


def test_model_without_training_serves_its_base_image() -> None:
    m = obj("Model", {"source": {"modelName": "base"}})
    plan = P.plan_model(m, {}, P.World(now=0), L, READY_BASE, None)
    assert plan.ready and plan.container_image == "base:1"


def test_gpu_preferred_and_present_is_passed_through() -> None:
    m = obj("Model", {"source": {"modelName": "b"}, "compute": {"types": ["GPU", "CPU"]}})
    assert P.wants_gpu(m, P.World(now=0, gpu=True)) is True
    assert P.wants_gpu(m, P.World(now=0, gpu=False)) is False  # falls back to CPU
    cpu_only = obj("Model", {"source": {"modelName": "b"}})
    assert P.wants_gpu(cpu_only, P.World(now=0, gpu=True)) is False


SERVER = obj("ModelServer", {"modelName": "m"}, "s")
MODEL = P.Dep(exists=True, ready=True, container_image="img:1")


def test_server_starts_with_published_port_then_becomes_ready_on_docs() -> None:
    plan = P.plan_server(SERVER, {}, P.World(now=0, free_port=5000), MODEL)
    [start] = plan.actions
    assert start.spec.ports == {8080: 5000} and start.spec.command == ["serve.sh"]
    assert plan.memo["port"] == 5000
    c = container(start.spec.name, role="server", image="img:1")
    memo = {"port": 5000, "startedAt": 0}
    plan = P.plan_server(SERVER, memo, P.World(now=1, containers={c.name: c}), MODEL)
    assert plan.reason == "NotReady" and not plan.ready
    plan = P.plan_server(SERVER, memo, P.World(now=2, containers={c.name: c}, probes={c.name: True}), MODEL)
    assert plan.ready and plan.url == "http://127.0.0.1:5000"


def test_server_that_never_answers_fails_after_the_timeout() -> None:
    c = container("sub-modelserver-default-s-server", role="server", image="img:1")
    plan = P.plan_server(SERVER, {"port": 1, "startedAt": 0},
                         P.World(now=700, containers={c.name: c}, ready_timeout=600,
                                 log_tails={c.name: "boom"}), MODEL)
    assert plan.reason == "ServeFailed" and "boom" in plan.message


def test_server_rolls_onto_a_new_model_image() -> None:
    c = container("sub-modelserver-default-s-server", role="server", image="img:0")
    plan = P.plan_server(SERVER, {"port": 1}, P.World(now=0, containers={c.name: c}), MODEL)
    assert [type(a) for a in plan.actions] == [RemoveContainer] and plan.reason == "Rolling"


def test_exited_server_is_restarted_with_backoff_and_log_tail() -> None:
    c = container("sub-modelserver-default-s-server", running=False, code=3, role="server", image="img:1")
    w = P.World(now=100, containers={c.name: c}, log_tails={c.name: "Traceback: oops"})
    plan = P.plan_server(SERVER, {"port": 1}, w, MODEL)
    assert plan.actions == [] and plan.reason == "ServerExited" and "oops" in plan.message
    assert plan.memo["nextRestartAt"] == 100 + P.RESTART_BACKOFF[0]
    plan = P.plan_server(SERVER, {"port": 1, "nextRestartAt": 101}, P.World(now=102, containers={c.name: c}), MODEL)
    assert [type(a) for a in plan.actions] == [RemoveContainer] and plan.memo["restarts"] == 1
    plan = P.plan_server(SERVER, {"port": 1, "restarts": 3}, w, MODEL)
    assert plan.reason == "CrashLoopBackOff"


def test_notebook_suspend_stops_it_and_token_is_kept() -> None:
    nb = obj("Notebook", {"modelName": "m"}, "n")
    plan = P.plan_notebook(nb, {}, P.World(now=0, free_port=7000), MODEL)
    [start] = plan.actions
    token = plan.memo["token"]
    assert start.spec.secret_env == {"JUPYTER_TOKEN": token} and start.spec.env == {}  # never on an argv
    assert start.spec.ports == {8888: 7000}
    c = container(start.spec.name, role="notebook", image="img:1")
    ready = P.plan_notebook(nb, {"token": token, "port": 7000},
                            P.World(now=1, containers={c.name: c}, probes={c.name: True}), MODEL)
    assert ready.ready and ready.url == f"http://127.0.0.1:7000/?token={token}"
    suspended = obj("Notebook", {"modelName": "m", "suspend": True}, "n")
    plan = P.plan_notebook(suspended, {"token": token}, P.World(now=2, containers={c.name: c}), MODEL)
    assert [type(a) for a in plan.actions] == [RemoveContainer] and plan.reason == "Suspended"
