"""The whole control plane (service + controller + executor) against the fake runtime.

The controller runs synchronously here: no threads, a fake clock, engine
events pumped by hand, so every test says exactly what happened and in what
order, without waiting on real time.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from substratus.errors import ValidationError
from substratus.runtimes.base import EngineEvent, RunSpec
from substratus.runtimes.engine import classify
from tests.unit.fakes.controlplane import (
    MANIFEST,
    Env,
    apply,
    finish_jobs,
    ready_condition,
    reason,
    serve_ready,
    server,
    settle,
    status,
)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_full_pipeline_becomes_ready(env: Env) -> None:
    assert [r["result"] for r in apply(env)] == ["created"] * 4
    settle(env)
    port = serve_ready(env)
    for kind, name in (("Dataset", "ds"), ("Model", "base"), ("Model", "tuned"), ("ModelServer", "tuned")):
        assert status(env, kind, name)["ready"], (kind, name, status(env, kind, name))
    tuned = status(env, "Model", "tuned")["containerImage"]
    assert server(env).spec.image == tuned and "trained-" in tuned
    assert status(env, "ModelServer", "tuned")["url"] == f"http://127.0.0.1:{port}"


def test_dataset_publishes_its_data_and_digest(env: Env) -> None:
    apply(env)
    settle(env)
    st = status(env, "Dataset", "ds")
    assert st["url"].startswith("file://") and st["url"].endswith("/data/data.jsonl")
    assert st["digest"].startswith("sha256:") and len(st["digest"]) == 71
    assert st["containerImage"].startswith("localhost/substratus/dataset-default-ds:")


def test_trained_model_publishes_lineage_and_labels_its_image(env: Env) -> None:
    apply(env)
    settle(env)
    st = status(env, "Model", "tuned")
    lineage = st["lineage"]
    assert lineage["baseModel"]["name"] == "base" and lineage["baseModel"]["imageId"]
    assert lineage["dataset"] == {"name": "ds", "url": status(env, "Dataset", "ds")["url"],
                                  "digest": status(env, "Dataset", "ds")["digest"],
                                  "source": status(env, "Dataset", "ds")["source"]}
    assert lineage["params"] == {"epochs": 2, "dataLimit": 1000000000000, "batchSize": 1}
    labels = env.rt.image_store[st["containerImage"]].labels
    assert labels["ai.substratus.dataset.digest"] == lineage["dataset"]["digest"]
    assert json.loads(labels["ai.substratus.training.params"]) == lineage["params"]


def test_training_progress_is_published(env: Env) -> None:
    apply(env)
    settle(env, 1)
    for _ in range(3):
        finish_jobs(env, role="load")
    train = next(c for c in env.rt.items.values() if c.state.labels.get("substratus.ai/role") == "train")
    logs = next(m.source for m in train.spec.mounts if m.target == "/model/logs")
    Path(logs, "progress.jsonl").write_text(
        '{"step": 10, "total_steps": 40, "epoch": 0.5, "loss": 3.2, "time": 100}\nnot json\n'
        '{"step": 20, "total_steps": 40, "epoch": 1.0, "loss": 2.5, "time": 110, "lr": 0.001}\n')
    env.ctl.queue.add(("Model", "default", "tuned"))
    env.drain()
    progress = status(env, "Model", "tuned")["progress"]
    assert progress == {"phase": "train", "step": 20, "totalSteps": 40, "percent": 50.0, "epoch": 1.0,
                        "loss": 2.5, "etaSeconds": 20.0, "updatedAt": 110.0, "metrics": {"lr": 0.001}}
    settle(env)
    assert status(env, "Model", "tuned")["progress"]["step"] == 20, "the last progress stays once trained"


def test_reapplying_unchanged_does_nothing(env: Env) -> None:
    apply(env)
    settle(env)
    calls = list(env.rt.calls)
    assert [r["result"] for r in apply(env)] == ["unchanged"] * 4
    settle(env)
    assert env.rt.calls == calls


def test_changed_source_rebuilds_retrains_and_rolls_the_server(env: Env) -> None:
    apply(env)
    settle(env)
    serve_ready(env)
    before = status(env, "Model", "tuned")["containerImage"]
    (env.tmp / "model" / "serve.sh").write_text("#!/bin/sh\n")
    results = {r["name"] + r["kind"]: r["result"] for r in apply(env)}
    assert results["baseModel"] == "configured" and results["dsDataset"] == "unchanged"
    settle(env)
    after = status(env, "Model", "tuned")["containerImage"]
    assert after != before
    assert server(env).spec.image == after


# ---- failures ----------------------------------------------------------------------------------

def test_failed_training_reports_log_tail_and_reapply_retries(env: Env) -> None:
    apply(env)
    finish_jobs(env, role="load")
    env.drain()
    finish_jobs(env, code=2, output="CUDA out of memory", role="train")
    assert reason(env, "Model", "tuned") == "TrainFailed"
    msg = ready_condition(env, "Model", "tuned")["message"]
    assert "exited with code 2" in msg and "CUDA out of memory" in msg
    assert reason(env, "ModelServer", "tuned") == "DependencyFailed"
    assert {r["name"] + r["kind"]: r["result"] for r in apply(env)}["tunedModel"] == "retried"
    settle(env)
    assert status(env, "Model", "tuned")["ready"]


def test_contract_violation_is_a_failed_condition_naming_the_clause(env: Env) -> None:
    (env.tmp / "model" / "Dockerfile").write_text("FROM scratch\nWORKDIR /app\n")
    apply(env)
    settle(env)
    assert reason(env, "Model", "base") == "ContractViolation"
    msg = ready_condition(env, "Model", "base")["message"]
    assert "[workdir] WORKDIR is /model" in msg and "`WORKDIR /model`" in msg  # the clause id sub verify prints
    assert not status(env, "Model", "tuned")["ready"]


def test_job_started_before_the_check_counts_only_once_checked(env: Env) -> None:
    """Load starts beside the contract check (speed); a violation still fails the dataset."""
    (env.tmp / "ds" / "Dockerfile").write_text("FROM scratch\nWORKDIR /wrong\n")
    apply(env)
    settle(env)
    assert reason(env, "Dataset", "ds") == "ContractViolation"
    assert not status(env, "Dataset", "ds")["ready"]


def test_empty_training_output_fails(env: Env) -> None:
    apply(env)
    finish_jobs(env, role="load")
    env.drain()
    finish_jobs(env, output="done, saved nothing (empty)", role="train")
    assert "/model/trained empty" in ready_condition(env, "Model", "tuned")["message"]


def test_reference_to_missing_dataset_stores_nothing(env: Env) -> None:
    text = MANIFEST.replace("datasetName: ds", "datasetName: nope")
    with pytest.raises(ValidationError) as e:
        apply(env, text)
    assert "spec.training.datasetName" in str(e.value) and "'nope' does not exist" in str(e.value)
    assert env.store.records() == []


def test_missing_dockerfile_stores_nothing(env: Env) -> None:
    (env.tmp / "ds" / "Dockerfile").unlink()
    with pytest.raises(ValidationError) as e:
        apply(env)
    assert "spec.source.dir" in str(e.value) and "no Dockerfile" in str(e.value)
    assert env.store.records() == []


def test_container_that_cannot_start_is_a_failed_condition(env: Env) -> None:
    def refuse(spec: RunSpec) -> Any:  # what the engine runtime raises for podman's words
        raise classify(["podman", "run", "--name", spec.name], 125,
                       "Error: unresolvable CDI devices nvidia.com/gpu=all")

    apply(env)
    settle(env)
    env.rt.run = refuse  # type: ignore[method-assign]
    env.rt.remove(server(env).spec.name)
    env.drain()
    assert reason(env, "ModelServer", "tuned") == "ServeFailed"
    msg = ready_condition(env, "ModelServer", "tuned")["message"]
    assert "could not start" in msg and "CDI" in msg


def test_one_objects_crash_does_not_stop_another_and_is_retried(env: Env, monkeypatch: Any) -> None:
    import substratus.reconcile.core as core

    real = core.plan_dataset
    crashes = []

    def crash_once(*args: Any, **kw: Any) -> Any:
        if not crashes:
            crashes.append(1)
            raise RuntimeError("planner bug")
        return real(*args, **kw)

    monkeypatch.setattr(core, "plan_dataset", crash_once)
    apply(env)
    assert status(env, "Model", "base")["conditions"], "the model went on while the dataset crashed"
    assert env.ctl.queue.failures(("Dataset", "default", "ds")) == 1
    env.advance(1.0)  # the backoff passed: the dataset is retried and proceeds
    settle(env)
    assert status(env, "Dataset", "ds")["ready"]


# ---- health --------------------------------------------------------------------------------------

def test_server_becomes_not_ready_after_missed_probes_and_heals(env: Env) -> None:
    apply(env)
    settle(env)
    port = serve_ready(env)
    assert status(env, "ModelServer", "tuned")["ready"]
    env.probes[port] = False
    env.advance(10)
    assert status(env, "ModelServer", "tuned")["ready"], "one missed probe is tolerated"
    for _ in range(3):
        env.advance(10)
    assert reason(env, "ModelServer", "tuned") == "NotReady"
    env.probes[port] = True
    env.advance(10)
    assert status(env, "ModelServer", "tuned")["ready"] and reason(env, "ModelServer", "tuned") == "Serving"


def test_server_late_past_the_ready_timeout_heals(env: Env) -> None:
    apply(env)
    settle(env)
    env.advance(601)
    env.advance(1)
    assert reason(env, "ModelServer", "tuned") == "ServeFailed"
    serve_ready(env)
    env.advance(10)
    assert status(env, "ModelServer", "tuned")["ready"]


def test_exited_server_restarts_with_backoff(env: Env) -> None:
    apply(env)
    settle(env)
    serve_ready(env)
    name = server(env).spec.name
    runs = sum(1 for c in env.rt.calls if c == ("run", name))
    env.rt.exit(name, 1, "boom")
    env.drain()
    assert reason(env, "ModelServer", "tuned") == "ServerExited" and "boom" in \
        ready_condition(env, "ModelServer", "tuned")["message"]
    env.advance(1.5)
    assert sum(1 for c in env.rt.calls if c == ("run", name)) == runs + 1


def test_a_taken_port_is_chosen_again(env: Env) -> None:
    real_run = env.rt.run
    taken = {20000}

    def run(spec: RunSpec) -> Any:
        if set(spec.ports.values()) & taken:
            raise classify(["podman", "run", "--name", spec.name], 126, "Error: cannot listen on the TCP port: "
                           "listen tcp4 127.0.0.1:20000: bind: address already in use")
        return real_run(spec)

    env.rt.run = run  # type: ignore[method-assign]
    apply(env)
    settle(env)
    assert server(env).spec.ports[8080] != 20000
    assert reason(env, "ModelServer", "tuned") != "ServeFailed"


def test_vanished_image_is_rebuilt(env: Env) -> None:
    apply(env)
    settle(env)
    image = status(env, "Model", "base")["containerImage"]
    builds = sum(1 for c in env.rt.calls if c == ("build", image))
    env.rt.remove_image(image)
    env.drain()
    settle(env)
    assert sum(1 for c in env.rt.calls if c == ("build", image)) == builds + 1
    assert status(env, "Model", "base")["ready"]


# ---- restart, delete -----------------------------------------------------------------------------

def test_restart_adopts_running_containers(env: Env) -> None:
    apply(env)
    settle(env)
    serve_ready(env)
    started = [c for c in env.rt.calls if c[0] == "run"]
    env.ctl = env.controller()
    env.ctl.queue.add_many([r.key for r in env.store.records()])
    env.drain()
    assert [c for c in env.rt.calls if c[0] == "run"] == started  # nothing started twice
    assert status(env, "ModelServer", "tuned")["ready"]


def test_delete_removes_containers_then_the_object(env: Env) -> None:
    apply(env)
    settle(env)
    name = server(env).spec.name
    doomed = env.ctl.delete([("ModelServer", "default", "tuned")])
    assert doomed == {("ModelServer", "default", "tuned"): [name]}
    assert env.store.get("ModelServer", "default", "tuned").deleting  # type: ignore[union-attr]
    env.drain()
    assert name not in env.rt.items
    assert env.store.get("ModelServer", "default", "tuned") is None


def test_orphans_of_a_deleted_object_are_removed(env: Env) -> None:
    apply(env)
    settle(env)
    name = server(env).spec.name
    env.store.delete_many([("ModelServer", "default", "tuned")])  # as if deleted while we were down
    env.ctl = env.controller()
    env.ctl.queue.add_many(sorted(env.ctl.observer.containers.owners()))
    env.drain()
    assert name not in env.rt.items


def test_reapply_of_an_object_being_deleted_is_refused(env: Env) -> None:
    from substratus.errors import ConflictError

    apply(env)
    settle(env)
    env.store.update_many([("ModelServer", "default", "tuned")], lambda r: replace(r, deleting=True), "now")
    with pytest.raises(ConflictError):
        apply(env)


# ---- garbage collection ----------------------------------------------------------------------

def test_gc_keeps_current_and_recent_runs_and_images_and_removes_superseded_ones(env: Env) -> None:
    import os

    apply(env)
    settle(env)
    serve_ready(env)
    images_v1 = set(env.rt.image_store)
    for i in range(3):  # three changes of the model: three new source images and trainings
        (env.tmp / "model" / "serve.sh").write_text(f"#!/bin/sh\n# v{i}\n")
        apply(env)
        settle(env)
        serve_ready(env)
    tuned_dir = env.layout.object_dir("Model", "default", "tuned")
    runs = sorted((p for p in tuned_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    assert len(runs) == 4
    for i, run in enumerate(runs):  # make their ages unambiguous
        os.utime(run, (1000 + i, 1000 + i))
    current = status(env, "Model", "tuned")["containerImage"]
    garbage = env.ctl.collect_garbage()
    left = sorted(p.name for p in tuned_dir.iterdir() if p.is_dir())
    assert len(left) == 2 and runs[-1].name in left and runs[0].name not in left
    assert current in env.rt.image_store and status(env, "Model", "base")["containerImage"] in env.rt.image_store
    assert garbage.images and not set(garbage.images) & {current}
    assert images_v1 - set(env.rt.image_store), "some first-version images were superseded and removed"
    env.drain()
    assert status(env, "ModelServer", "tuned")["ready"], "collecting garbage disturbed nothing in use"


def test_gc_removes_only_images_this_control_plane_built(env: Env) -> None:
    """Image names are shared by every home on one engine. Source images carry no owner labels (a LABEL
    step costs a layer commit per build): the ledger of built ids says whose an image is."""
    from dataclasses import replace as copy_with

    from substratus.local.ledger import BuiltImages
    from substratus.runtimes.base import ImageInfo

    apply(env)
    settle(env)
    serve_ready(env)
    assert env.rt.image_store[status(env, "Model", "base")["containerImage"]].labels == {}, \
        "a source image is built without a LABEL step"
    assert env.rt.image_store[status(env, "Model", "tuned")["containerImage"]].labels, "a trained image keeps its"
    for i in range(2):
        (env.tmp / "model" / "serve.sh").write_text(f"#!/bin/sh\n# v{i}\n")
        apply(env)
        settle(env)
        serve_ready(env)
    for ref, info in list(env.rt.image_store.items()):  # only the ledger can tell whose they are now
        env.rt.image_store[ref] = copy_with(info, labels={})
    repo = status(env, "Model", "tuned")["containerImage"].rsplit(":", 1)[0]
    foreign = ImageInfo(ref=f"{repo}:trained-f0reign", id="f" * 64, workdir="/model", env={}, labels={},
                        entrypoint=[], cmd=[])
    env.rt.image_store[foreign.ref] = foreign  # another home's build of an object of the same name
    garbage = env.ctl.collect_garbage()
    ours = [ref for ref in garbage.images if ref != foreign.ref]
    assert ours and foreign.ref in garbage.images, "superseded images of both homes were found"
    assert not set(ours) & set(env.rt.image_store), "ours were removed"
    assert foreign.ref in env.rt.image_store, "another home's image was removed"
    assert BuiltImages(env.layout.built_images).ids() == {i.id for i in env.rt.image_store.values()} - {foreign.id}, \
        "the ledger keeps the ids of our images that exist, and only those"


def test_gc_leaves_objects_on_their_way_alone(env: Env) -> None:
    apply(env)
    env.drain()  # building, nothing ready yet
    images = set(env.rt.image_store)
    garbage = env.ctl.collect_garbage()
    assert garbage.images == [] and garbage.run_dirs == [] and set(env.rt.image_store) == images


def test_another_control_planes_containers_are_never_touched(env: Env) -> None:
    """Same object names, another $SUBSTRATUS_HOME: its containers carry another instance label."""
    apply(env)
    settle(env)
    serve_ready(env)
    mine = server(env)
    foreign = replace(mine.spec, name=mine.spec.name.replace(env.layout.instance, "other0"),
                      labels={**mine.spec.labels, "substratus.ai/instance": "other0", "substratus.ai/image": "old"})
    env.rt.run(foreign)
    env.ctl.on_engine_event(EngineEvent(type="container", action="start", name=foreign.name,
                                        labels=foreign.labels))
    env.ctl.queue.add(("ModelServer", "default", "tuned"))
    env.advance(10)
    assert foreign.name in env.rt.items, "a foreign container was removed"
    assert env.ctl.observer.containers.of(("ModelServer", "default", "tuned")).keys() == {mine.spec.name}


def test_containers_run_from_our_images_by_hand_are_never_taken_for_ours(env: Env) -> None:
    """A container inherits its image's labels, and our images carry the owner's labels: one that
    someone runs by hand from a model's image, or a contract probe, is neither planned for nor
    removed (only the roles the planners run count)."""
    apply(env)
    settle(env)
    serve_ready(env)
    mine = server(env)
    owner = ("ModelServer", "default", "tuned")
    for role in ("source", "trained", "once"):
        by_hand = replace(mine.spec, name=f"by-hand-{role}", labels={**mine.spec.labels, "substratus.ai/role": role})
        env.rt.run(by_hand)
        env.ctl.on_engine_event(EngineEvent(type="container", action="start", name=by_hand.name,
                                            labels=by_hand.labels))
    env.ctl.observer.containers.relist()
    env.ctl.queue.add(owner)
    env.advance(10)
    env.ctl.collect_garbage()
    assert {f"by-hand-{r}" for r in ("source", "trained", "once")} <= set(env.rt.items)
    assert env.ctl.observer.containers.of(owner).keys() == {mine.spec.name}


def test_a_jobs_exit_is_read_from_its_died_event_without_inspecting_it(env: Env) -> None:
    """The died event carries the exit code: judging a finished job costs no inspect of its container."""
    apply(env)
    env.drain()
    load = next(c for c in env.rt.items.values() if c.state.labels.get("substratus.ai/role") == "load")
    inspected: list[str] = []
    original = env.rt.container

    def counting(name: str) -> Any:
        inspected.append(name)
        return original(name)

    env.rt.container = counting  # type: ignore[method-assign]
    finish_jobs(env, role="load")
    assert inspected == []
    assert load.spec.name not in env.rt.items, "the finished job's container is removed"
    assert (Path(load.spec.mounts[0].source).parent / "job.log").read_text() == "job output line\n"
    settle(env)
    assert status(env, "Dataset", "ds")["ready"] is True and reason(env, "Dataset", "ds") == "Loaded"


def test_a_starting_servers_log_tail_is_not_read_on_every_probe(env: Env) -> None:
    """A starting server is probed every 100 ms; reading its log each time was an engine process
    per probe. The tail is read again after a while, or at once when the container changed."""
    apply(env)
    settle(env)
    name = server(env).spec.name
    reads: list[str] = []
    original = env.rt.logs

    def counting(n: str, **kw: Any) -> Any:
        if n == name:
            reads.append(n)
        return original(n, **kw)

    env.rt.logs = counting  # type: ignore[method-assign]
    for _ in range(30):  # three seconds of probes that find nothing listening yet
        env.advance(0.1)
    assert 1 <= len(reads) <= 2, f"{len(reads)} reads in 30 probes"
    env.rt.exit(name, 1, "boom")
    env.drain()
    assert "boom" in ready_condition(env, "ModelServer", "tuned")["message"], "an exit reads the tail afresh"


def test_a_judged_jobs_container_left_by_a_stopped_control_plane_is_removed_with_its_log(env: Env) -> None:
    """The job was judged (its run marked succeeded) but the control plane stopped before copying its
    log and removing its container: the next one does both."""
    apply(env)
    env.drain()
    load = next(c for c in env.rt.items.values() if c.state.labels.get("substratus.ai/role") == "load")
    run_dir = Path(load.spec.mounts[0].source).parent
    Path(load.spec.mounts[0].source, "data.jsonl").write_text('{"text":"x"}\n')
    env.rt.exit(load.spec.name, 0, "loaded 1 record")
    (run_dir / ".succeeded").write_text("ok\n")  # what the collect wrote before the stop
    env.ctl = env.controller()  # a new control plane: it lists the exited container
    env.ctl.queue.add_many([r.key for r in env.store.records()])
    env.drain()
    assert load.spec.name not in env.rt.items
    assert "loaded 1 record" in (run_dir / "job.log").read_text()
