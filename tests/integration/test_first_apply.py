"""The `sub apply` that starts the control plane hands its objects to it (applied before the web
framework is even imported): through the real CLI, daemon and engine, it answers exactly what the
API answers, refuses what the API refuses, and two such applies at once both land."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.integration.conftest import SUB, Sub, copy_fixture

HANDED_OVER = "handed over by the `sub apply` that started this control plane"


def model(name: str) -> str:
    return f"apiVersion: substratus.ai/v1\nkind: Model\nmetadata: {{name: {name}}}\nspec: {{source: {{dir: model}}}}\n"


def notebook(name: str, model_name: str = "base") -> str:
    return (f"apiVersion: substratus.ai/v1\nkind: Notebook\nmetadata: {{name: {name}}}\n"
            f"spec: {{modelName: {model_name}, suspend: true}}\n")


def test_the_first_apply_is_applied_by_the_control_plane_it_starts(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    copy_fixture("model-shell", tmp_path / "model", busybox)
    (tmp_path / "m.yaml").write_text(model("base") + "---\n" + notebook("nb"))
    first = sub.ok("apply", "-f", str(tmp_path / "m.yaml"), "-o", "json")
    assert [(r["kind"], r["name"], r["result"], r["generation"]) for r in json.loads(first)] == \
        [("Model", "base", "created", 1), ("Notebook", "nb", "created", 1)]
    assert (sub.home / "controlplane.json").exists(), "the control plane answers once `sub apply` returns"
    log = (sub.home / "controlplane.log").read_text()
    assert f"applied 2 objects {HANDED_OVER}" in log, log
    assert "Traceback" not in log
    assert not list(sub.home.glob(".first-apply-*")), "the handed-over request is removed"
    assert sub.ok("apply", "-f", str(tmp_path / "m.yaml")).split() == \
        ["model/base", "unchanged", "notebook/nb", "unchanged"]
    names = [o["metadata"]["name"] for o in json.loads(sub.ok("get", "notebooks", "-o", "json"))["items"]]
    assert names == ["nb"]


def test_a_refused_first_apply_changes_nothing_and_the_plane_runs_on(sub: Sub, tmp_path: Path) -> None:
    (tmp_path / "nb.yaml").write_text(notebook("nb", model_name="missing"))
    proc = sub("apply", "-f", str(tmp_path / "nb.yaml"))
    assert proc.returncode == 1, proc.stderr
    assert "spec.modelName" in proc.stderr and "'missing' does not exist" in proc.stderr, proc.stderr
    assert "nothing was applied" in proc.stderr
    assert (sub.home / "controlplane.json").exists(), "the control plane answers once `sub apply` returns"
    assert json.loads(sub.ok("get", "notebooks", "-o", "json"))["items"] == []
    log = (sub.home / "controlplane.log").read_text()
    assert log.count("control plane for ") == 1, "the control plane that refused the apply answers the next command"
    assert HANDED_OVER not in log and "Traceback" not in log


def test_two_applies_that_both_start_the_plane_both_land(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    copy_fixture("model-shell", tmp_path / "model", busybox)
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(model("base") + "---\n" + notebook(f"nb-{name}"))
    procs = [subprocess.Popen([SUB, "apply", "-f", str(tmp_path / f"{name}.yaml"), "-o", "json"], env=sub.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
             for name in ("a", "b")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    results = sorted((r["name"], r["result"]) for out, _ in outs for r in json.loads(out))
    assert results == [("base", "created"), ("base", "unchanged"), ("nb-a", "created"), ("nb-b", "created")]
    names = sorted(o["metadata"]["name"] for o in json.loads(sub.ok("get", "notebooks", "-o", "json"))["items"])
    assert names == ["nb-a", "nb-b"]
    log = (sub.home / "controlplane.log").read_text()
    assert log.count("control plane for ") == 1, "one control plane for the home"
    assert "Traceback" not in log
