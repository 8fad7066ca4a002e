"""The control plane's static contract check: one probe container says both where the image's
scripts are and which directory it starts in (its WORKDIR), so no image inspect is needed."""

from __future__ import annotations

from pathlib import Path

from substratus.build import contract
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
