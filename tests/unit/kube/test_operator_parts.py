"""The operator's and the cluster CLI's pure parts: state in annotations, apply results, merge
patches, URLs, wake-ups, sources, and the planners' platform branch. No cluster needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from substratus.artifacts.layout import ArtifactLayout
from substratus.cli import backend, cluster_apply
from substratus.errors import SourceError, ValidationError
from substratus.kube import records, sources
from substratus.kube.reconciler import cluster_facts, service_url
from substratus.reconcile import workloads as W
from substratus.reconcile.actions import RemoveContainer, StartContainer
from substratus.reconcile.plan import Dep, Snapshot
from substratus.reconcile.state import Failure, NotebookState, ServerState
from substratus.resources.manifest import parse_object
from substratus.resources.status import Reason, Status
from substratus.runtimes.base import ContainerState
from substratus.runtimes.kubernetes import annotations as ann
from substratus.runtimes.kubernetes.client import merge_patch

FACTS = cluster_facts(ArtifactLayout(store="s3://bucket"), 600.0, gpu=False)
MODEL = Dep(exists=True, current=True, status=Status(ready=True, container_image="localhost/substratus/m:2"))


def obj(kind: str, spec: dict[str, Any], name: str = "x") -> Any:
    return parse_object({"apiVersion": "substratus.ai/v1", "kind": kind, "metadata": {"name": name}, "spec": spec})


def body(generation: int = 1, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"generation": generation, "annotations": annotations or {}}}


# ---- the state annotation ----------------------------------------------------------------------

def test_state_annotation_keeps_the_token_out_and_reads_it_back_from_the_secret() -> None:
    state = NotebookState(port=8888, token="s3cret", failures={"start:x": Failure(reason=Reason.NOTEBOOK_FAILED,
                                                                                  message="no")})
    text, token = records.encode("1|||", state)
    assert token == "s3cret" and "s3cret" not in text
    stored = records.Stored.read(body(annotations={ann.STATE: text}))
    assert stored.has_token and stored.trigger == "1|||"
    assert records.decode("Notebook", stored, token) == state
    assert records.decode("Notebook", stored, None).token is None


def test_state_belongs_to_one_apply_a_new_generation_or_annotation_is_a_reapply() -> None:
    text, _ = records.encode(ann.apply_trigger(body(1)), ServerState(port=8080))
    stored = records.Stored.read(body(1, {ann.STATE: text}))
    assert records.is_current(stored, body(1, {ann.STATE: text}))
    assert not records.is_current(stored, body(2, {ann.STATE: text}))
    assert not records.is_current(stored, body(1, {ann.STATE: text, ann.RETRY: "1"}))
    assert not records.is_current(stored, body(1, {ann.STATE: text, ann.SOURCE_COMMIT: "abc"}))


def test_an_unreadable_state_annotation_starts_afresh() -> None:
    for text in ("{not json", "[1, 2]"):
        stored = records.Stored.read(body(annotations={ann.STATE: text}))
        assert stored.state is None and not records.is_current(stored, body())


def test_token_secret_is_owned_by_the_object_and_round_trips() -> None:
    from substratus.runtimes.kubernetes.workloads import Owner

    secret = records.token_secret("Notebook", "nb", "team", "s3cret", Owner("substratus.ai/v1", "Notebook", "nb", "u1"))
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "u1" and "s3cret" not in json.dumps(secret)
    assert records.token_from_secret(secret) == "s3cret" and records.token_from_secret(None) is None


# ---- sub apply against a cluster ----------------------------------------------------------------

DESIRED = {"apiVersion": "substratus.ai/v1", "kind": "Model", "metadata": {"name": "m", "namespace": "default"},
           "spec": {"source": {"modelName": "base"}, "compute": {"types": ["CPU"]}}}


def current(spec: dict[str, Any], *, reason: str = "Ready", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "m", "generation": 3, "annotations": annotations or {}},
            "spec": spec, "status": {"observedGeneration": 3, "conditions": [{"type": "Ready", "reason": reason}]}}


def test_apply_results_are_the_local_ones() -> None:
    result, created = cluster_apply.change(None, DESIRED, {ann.SOURCE_COMMIT: "c1"})
    assert result == "created" and created is not None
    assert created["metadata"]["annotations"] == {ann.SOURCE_COMMIT: "c1"}
    assert cluster_apply.change(current(DESIRED["spec"]), DESIRED, {}) == ("unchanged", None)
    result, patch = cluster_apply.change(current(DESIRED["spec"], reason="TrainFailed",
                                                 annotations={ann.RETRY: "2"}), DESIRED, {})
    assert result == "retried" and patch is not None and patch["metadata"]["annotations"][ann.RETRY] == "3"
    result, patch = cluster_apply.change(current(DESIRED["spec"]), DESIRED, {ann.SOURCE_COMMIT: "c2"})
    assert result == "configured" and patch is not None and "spec" not in patch


def test_a_changed_spec_is_patched_with_removed_fields_set_to_null() -> None:
    old = {**DESIRED["spec"], "training": {"datasetName": "d"}}
    result, patch = cluster_apply.change(current(old), DESIRED, {})
    assert result == "configured" and patch is not None and patch["spec"] == {"training": None}


def test_merge_patch_turns_old_into_new() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]}
    new = {"a": 1, "b": {"c": 5}, "e": [2], "f": "x"}
    assert merge_patch(old, new) == {"b": {"c": 5, "d": None}, "e": [2], "f": "x"}
    assert merge_patch(old, old) == {}


def test_a_failure_of_an_older_generation_is_not_a_reason_to_retry() -> None:
    stale = current(DESIRED["spec"], reason="BuildFailed")
    stale["status"]["observedGeneration"] = 2
    assert not cluster_apply.failed(stale)


def test_backend_is_chosen_by_context_or_env_and_a_bad_value_is_named() -> None:
    assert not backend.wants_cluster(None, {})
    assert backend.wants_cluster("kind-dev", {})
    assert backend.wants_cluster(None, {backend.BACKEND_ENV: "Kubernetes"})
    with pytest.raises(ValidationError, match="SUBSTRATUS_BACKEND"):
        backend.wants_cluster(None, {backend.BACKEND_ENV: "k8s"})


def test_local_only_commands_refuse_a_cluster_instead_of_working_here(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from substratus.cli.main import cli

    for args in (["notebook", str(tmp_path)], ["dashboard"]):
        r = CliRunner().invoke(cli, ["--context", "kind-dev", *args],
                               env={"SUBSTRATUS_HOME": str(tmp_path / "home")})
        assert r.exit_code != 0 and f"`sub {args[0]}` works with the local control plane only" in r.output, r.output
        assert not (tmp_path / "home").exists()  # nothing was started


def test_sub_does_not_load_the_kubernetes_client_unless_asked() -> None:
    code = ("import sys; from click.testing import CliRunner; from substratus.cli.main import cli; "
            "r = CliRunner().invoke(cli, ['--help']); "
            "print(r.exit_code, '--context' in r.output, 'kubernetes' in sys.modules, 'kopf' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.split()
    assert out == ["0", "True", "False", "False"]


# ---- what the operator publishes and whom it wakes ----------------------------------------------

def test_a_server_publishes_its_service_url_and_a_notebook_no_token() -> None:
    """The planner asks the backend for the URL (Facts.urls): on a cluster, the Service's."""
    server = obj("ModelServer", {"modelName": "m"}, "srv")
    plan = W.plan_server(server, ServerState(port=8080), Snapshot(now=0), FACTS, MODEL)
    [start] = plan.actions
    assert isinstance(start, StartContainer)
    c = ContainerState(start.spec.name, "1", "i", dict(start.spec.labels), True, None, "ready")
    plan = W.plan_server(server, ServerState(port=8080), Snapshot(now=1, containers={c.name: c},
                                                                   probes={c.name: True}), FACTS, MODEL)
    url = service_url("ModelServer", "default", "srv")
    assert plan.published.url == url and url.endswith(".default.svc.cluster.local:8080")
    assert all("127.0.0.1" not in c.message for c in plan.conditions) and url in plan.conditions[0].message
    notebook = obj("Notebook", {"modelName": "m"}, "nb")
    [start] = W.plan_notebook(notebook, NotebookState(port=8888, token="t"), Snapshot(now=0), FACTS, MODEL).actions
    assert isinstance(start, StartContainer)
    c = ContainerState(start.spec.name, "1", "i", dict(start.spec.labels), True, None, "ready")
    plan = W.plan_notebook(notebook, NotebookState(port=8888, token="t"),
                           Snapshot(now=1, containers={c.name: c}, probes={c.name: True}), FACTS, MODEL)
    assert plan.published.url == service_url("Notebook", "default", "nb") and "token" not in plan.published.url


# ---- sources on a cluster ------------------------------------------------------------------------

def test_a_dir_source_needs_the_upload_sub_apply_makes() -> None:
    model = obj("Model", {"source": {"dir": "/home/me/model"}})
    with pytest.raises(SourceError, match="sub --context CONTEXT apply"):
        sources.resolve(model, {}, lambda ref: None, Path("/tmp"))
    uploaded = ann.UploadedDir(dir="/home/me/model", revision="abc1234def", archive="sources/dirs/x.tar.gz")
    src = sources.resolve(model, {ann.SOURCE_DIR: uploaded.encode()}, lambda ref: None, Path("/tmp"))
    assert src is not None and src.revision == "abc1234def" and src.context == "sources/dirs/x.tar.gz"
    assert src.description == "dir /home/me/model (abc1234)"
    moved = ann.UploadedDir(dir="/elsewhere", revision="r", archive="a").encode()
    with pytest.raises(SourceError, match="changed after"):
        sources.resolve(model, {ann.SOURCE_DIR: moved}, lambda ref: None, Path("/tmp"))


def test_only_our_own_base_images_are_looked_up() -> None:
    asked: list[str] = []

    def lookup(ref: str) -> str:
        asked.append(ref)
        return "sha256:1"
    assert sources.own_image("localhost/substratus/python-base:bookworm", lookup) == "sha256:1"
    assert sources.own_image("docker.io/library/python:3.11", lookup) is None
    assert asked == ["localhost/substratus/python-base:bookworm"]


# ---- the planners on a platform that restarts and rolls workloads itself --------------------------

def server_container(plan_image: str = "localhost/substratus/m:1", status: str = "ready",
                     code: int | None = None) -> tuple[Any, ContainerState]:
    server = obj("ModelServer", {"modelName": "m"}, "srv")
    old = Dep(exists=True, current=True, status=Status(ready=True, container_image=plan_image))
    [start] = W.plan_server(server, ServerState(port=8080), Snapshot(now=0), FACTS, old).actions
    assert isinstance(start, StartContainer)
    return server, ContainerState(start.spec.name, "1", "i", dict(start.spec.labels), True, code, status)


def test_on_a_platform_a_server_rolls_in_place_onto_a_new_image() -> None:
    server, c = server_container()
    plan = W.plan_server(server, ServerState(port=8080, ready_since=1.0), Snapshot(now=5, containers={c.name: c},
                                                                                   probes={c.name: True}), FACTS, MODEL)
    [roll] = plan.actions
    assert isinstance(roll, StartContainer) and roll.spec.image == "localhost/substratus/m:2"
    assert plan.reason is Reason.ROLLING and plan.state.started_at == 5 and plan.state.ready_since is None  # type: ignore
    local = W.plan_server(server, ServerState(port=8080), Snapshot(now=5, containers={c.name: c}),
                          FACTS.__class__(layout=FACTS.layout), MODEL)
    assert [type(a) for a in local.actions] == [RemoveContainer]  # locally: removed, then started again


def test_on_a_platform_a_crashing_server_is_crash_loop_back_off_with_its_log_and_is_not_restarted_by_us() -> None:
    server, c = server_container(plan_image="localhost/substratus/m:2", status="restarting", code=3)
    plan = W.plan_server(server, ServerState(port=8080, started_at=0), Snapshot(
        now=1, containers={c.name: c}, log_tails={c.name: "OSError: no weights"}), FACTS, MODEL)
    assert plan.actions == [] and plan.reason is Reason.CRASH_LOOP_BACK_OFF
    assert "serve.sh exited with code 3" in plan.message and "OSError: no weights" in plan.message


def test_on_a_platform_one_not_ready_report_is_not_ready_and_silence_never_restarts() -> None:
    server, c = server_container(plan_image="localhost/substratus/m:2", status="running")
    state = ServerState(port=8080, started_at=0, ready_since=1, probe_failures=100)
    plan = W.plan_server(server, state, Snapshot(now=5000, containers={c.name: c}, probes={c.name: False}), FACTS,
                         MODEL)
    assert plan.reason is Reason.NOT_READY and plan.actions == []


def test_artifact_keys_are_what_the_planners_mount() -> None:
    layout = ArtifactLayout(store="s3://bucket/pre")
    run = layout.run_dir("Dataset", "ns", "d", "0123456789abcdef0123")
    assert run == PurePosixPath("objects/dataset/ns/d/0123456789abcdef")
    url = layout.artifact_url(run / "data" / "f.jsonl")
    assert url == "s3://bucket/pre/objects/dataset/ns/d/0123456789abcdef/data/f.jsonl"
    assert layout.artifact_path(url) == run / "data" / "f.jsonl"


class RecordingApi:
    """The one object, as the API server has it now; what was read and patched."""

    def __init__(self, current: dict[str, Any]) -> None:
        self.current, self.gets, self.patches = current, 0, 0

    def get(self, *args: Any) -> dict[str, Any]:
        self.gets += 1
        return self.current

    def patch(self, *args: Any, **kwargs: Any) -> None:
        self.patches += 1


def reconciler(api: Any, tmp_path: Path) -> Any:
    """The operator's Reconciler, built as the operator builds it, on a recording API; no threads."""
    from substratus.kube.reconciler import Reconciler
    from substratus.runtimes.kubernetes.runtime import KubernetesRuntime
    from substratus.runtimes.kubernetes.settings import KubeSettings

    return Reconciler(api, KubernetesRuntime(api, KubeSettings()), None, scratch=tmp_path, workers=0)


def test_a_pass_with_actions_plans_again_when_an_outcome_changed_the_state_meanwhile(tmp_path: Path) -> None:
    """A contract check finished (its verdict saved in the state) between a pass's read and its write:
    the pass planned the check again from what it read. With nothing to write it used to skip reading
    the object again and ran the check a second time (a third `sub-once-` pod in the emulator tier)."""
    from substratus.reconcile.state import DatasetState

    state = DatasetState()
    text, _ = records.encode("t1", state)
    read = {"metadata": {"generation": 1, "annotations": {ann.STATE: text}}, "status": {"ready": False}}
    verified = records.encode("t1", state.model_copy(update={"verified": ["img:1"]}))[0]
    api = RecordingApi({"metadata": {"generation": 1, "annotations": {ann.STATE: verified}}, "status": {"ready": False}})
    rec = reconciler(api, tmp_path)
    key = ("Dataset", "default", "d")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("substratus.kube.reconciler.apply_trigger", lambda body: "t1")
        assert rec.write(key, read, "t1", state, "", {"ready": False}) is True, "nothing to write, nothing to do"
        assert api.gets == 0
        assert rec.write(key, read, "t1", state, "", {"ready": False}, acting=True) is False
        assert api.gets == 1 and api.patches == 0
        api.current = read
        assert rec.write(key, read, "t1", state, "", {"ready": False}, acting=True) is True, "unchanged: act"
        assert api.patches == 0
