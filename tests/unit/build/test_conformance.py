"""The control plane's static contract check: one probe container says both where the image's
scripts are and which directory it starts in (its WORKDIR), so no image inspect is needed; a
broken clause is named by the id `sub verify` prints; a probe that could not run says nothing
about the image (a temporary error, not a violation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from substratus import contract as facts
from substratus.build import conformance as contract
from substratus.errors import EngineError, ImageMissing
from substratus.reconcile.actions import CheckContract
from substratus.reconcile.outcomes import Failed, Verified, checked, temporary
from substratus.resources.status import Reason
from substratus.runtimes.base import BuildSpec, Completed, RunSpec
from substratus.runtimes.fake import FakeRuntime


def answering(workdir: str | None, *scripts: str):  # type: ignore[no-untyped-def]
    def once(spec: RunSpec) -> Completed:
        lines = [f"found {s} /usr/local/bin/{s}" for s in scripts]
        lines += [f"workdir {workdir}"] if workdir is not None else []
        return Completed(0, "\n".join(lines))
    return once


def test_workdir_comes_from_the_probe_without_inspecting_the_image() -> None:
    rt = FakeRuntime()
    rt.once = answering("/model", "serve.sh", "train.sh", "notebook.sh")
    asked: list[str] = []
    rt.image_info = lambda ref: asked.append(ref)  # type: ignore[assignment,method-assign,func-returns-value]
    results = contract.check_image(rt, "img", "Model")
    assert asked == [] and all(r.ok for r in results), results


def test_a_wrong_or_missing_workdir_is_named_as_before() -> None:
    rt = FakeRuntime()
    rt.once = answering("/srv", "load.sh", "notebook.sh")
    where = contract.check_image(rt, "img", "Dataset")[0]
    assert not where.ok and "'/srv'" in where.evidence and "WORKDIR /dataset" in where.evidence
    rt.once = answering("/", "load.sh", "notebook.sh")
    assert "(unset, i.e. /)" in contract.check_image(rt, "img", "Dataset")[0].evidence


def test_without_a_shell_the_workdir_is_read_from_the_image(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nWORKDIR /model\n")
    rt = FakeRuntime()
    rt.build(BuildSpec(context=tmp_path, tag="img"), lambda _: None)
    rt.once = lambda spec: Completed(127, "exec: sh: not found")
    where, *scripts = contract.check_image(rt, "img", "Model")
    assert where.ok and "'/model'" in where.evidence
    assert not any(s.ok for s in scripts) and "contract scripts need a shell" in scripts[0].evidence


def test_each_result_is_a_clause_of_the_catalogue_sub_verify_prints() -> None:
    rt = FakeRuntime()
    rt.once = answering("/srv", "serve.sh", "notebook.sh")
    results = contract.check_image(rt, "img", "Model")
    assert [r.clause.id for r in results] == ["workdir", "script.serve", "script.train", "script.notebook"]
    assert all(r.clause in facts.clauses_for("Model") for r in results)
    assert [r.ok for r in results] == [False, True, False, True]


def test_a_violation_names_the_clause_ids_their_fixes_and_the_command_that_checks_them() -> None:
    rt = FakeRuntime()
    rt.once = answering("/srv", "serve.sh", "notebook.sh")
    [outcome] = checked(CheckContract(image="img", kind="Model"), contract.check_image(rt, "img", "Model"))
    assert isinstance(outcome, Failed) and outcome.reason is Reason.CONTRACT_VIOLATION
    assert outcome.key == "check:img"
    assert "[workdir] WORKDIR is /model" in outcome.message and "[script.train]" in outcome.message
    assert facts.clause("Model", "workdir").fix in outcome.message
    assert "[script.serve]" not in outcome.message  # a kept clause is not named
    assert "sub verify model --image img" in outcome.message
    rt.once = answering("/model", "serve.sh", "train.sh", "notebook.sh")
    assert checked(CheckContract(image="img", kind="Model"), contract.check_image(rt, "img", "Model")) == \
        [Verified("img")]


def test_a_probe_that_timed_out_is_a_temporary_error_not_a_violation() -> None:
    rt = FakeRuntime()
    rt.once = lambda spec: Completed(124, "(timed out after 120s)", timed_out=True)
    with pytest.raises(EngineError) as caught:
        contract.check_image(rt, "img", "Model")
    assert temporary(caught.value) and "did not finish" in caught.value.message


def test_an_engine_that_could_not_run_the_probe_raises_its_classified_error() -> None:
    rt = FakeRuntime()
    rt.fail("run_once", ImageMissing("the image img is not in podman's image store"))
    with pytest.raises(ImageMissing) as caught:
        contract.check_image(rt, "img", "Dataset")
    assert temporary(caught.value)


def test_the_mounts_are_the_contracts_mount_points() -> None:
    load = contract.load_mounts("/h/data", "/h/logs")
    assert [(m.source, m.target, m.read_only) for m in load] == [
        ("/h/data", facts.DATA_DIR, False), ("/h/logs", facts.DATASET_LOGS, False)]
    train = contract.train_mounts("/h/data", "/h/trained", "/h/logs")
    assert [(m.target, m.read_only) for m in train] == [
        (facts.DATA_DIR, True), (facts.TRAINED_DIR, False), (facts.MODEL_LOGS, False)]
