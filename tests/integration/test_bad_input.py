"""Bad input gets a clear error naming the field or step, and changes nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import Sub, copy_fixture

HEAD = "apiVersion: substratus.ai/v1\n"


def ds(source: str, filename: str = "d.jsonl", name: str = "d") -> str:
    return f"{HEAD}kind: Dataset\nmetadata: {{name: {name}}}\nspec:\n  filename: {filename}\n  source: {source}\n"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, busybox: Path) -> Path:
    root = tmp_path_factory.mktemp("repo")
    r = root / "r"
    copy_fixture("dataset-shell", r / "datasets" / "shell", busybox)
    (r / "nodockerfile").mkdir()
    (r / "nodockerfile" / "README").write_text("no Dockerfile here\n")
    git = ["git", "-c", "user.name=T", "-c", "user.email=t@example.invalid", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=r, check=True)
    subprocess.run([*git, "add", "."], cwd=r, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=r, check=True)
    return r


CASES = {
    "malformed-yaml": (f"{HEAD}kind: Dataset\nmetadata: {{name: d\n", ["malformed YAML", "line"]),
    "unknown-kind": (f"{HEAD}kind: Pipeline\nmetadata: {{name: d}}\nspec: {{}}\n", ["kind", "unknown kind"]),
    "unknown-field": (f"{HEAD}kind: Server\nmetadata: {{name: s}}\nspec: {{modelName: m, replicas: 2}}\n",
                      ["spec.replicas", "unknown field"]),
    "bad-name": (ds("{dir: .}", name="Bad_Name"), ["metadata.name", "DNS-1123"]),
    "filename-slash": (ds("{dir: .}", filename="a/b.jsonl"), ["spec.filename", "path separator"]),
    "filename-dotdot": (ds("{dir: .}", filename=".."), ["spec.filename"]),
    "missing-field": (f"{HEAD}kind: Dataset\nmetadata: {{name: d}}\nspec: {{source: {{dir: .}}}}\n",
                      ["spec.filename", "required"]),
    "bad-param": (f"{HEAD}kind: Model\nmetadata: {{name: m}}\nspec:\n  source: {{dir: .}}\n  training: "
                  f"{{datasetName: d, params: {{epochs: 0}}}}\n", ["spec.training.params.epochs"]),
    "missing-reference": (f"{HEAD}kind: Server\nmetadata: {{name: s}}\nspec: {{modelName: ghost}}\n",
                          ["spec.modelName", "'ghost' does not exist"]),
    "git-url": (ds("{git: {url: 'file:///nonexistent/repo.git'}}"), ["spec.source.git.url", "cannot read"]),
    "git-branch": (ds("{git: {url: 'file://REPO', branch: nope, path: datasets/shell}}"),
                   ["spec.source.git.branch", "no branch 'nope'"]),
    "git-path": (ds("{git: {url: 'file://REPO', path: datasets/missing}}"),
                 ["spec.source.git.path", "does not exist"]),
    "no-dockerfile": (ds("{git: {url: 'file://REPO', path: nodockerfile}}"),
                      ["spec.source.git.path", "no Dockerfile"]),
    "dir-missing": (ds("{dir: ./not-here}"), ["spec.source.dir", "does not exist"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_clearly_and_stores_nothing(case: str, sub: Sub, tmp_path: Path, repo: Path) -> None:
    text, expected = CASES[case]
    f = tmp_path / "bad.yaml"
    f.write_text(text.replace("REPO", str(repo)))
    proc = sub("apply", "-f", str(f))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout == ""
    for part in expected:
        assert part in proc.stderr, f"{part!r} not in:\n{proc.stderr}"
    assert "hint:" in proc.stderr or "nothing was applied" in proc.stderr
    if (sub.home / "controlplane.json").exists():
        assert json.loads(sub.ok("get", "-o", "json")) == {"items": []}


def test_usage_errors_exit_2(sub: Sub) -> None:
    assert sub("apply").returncode == 2
    assert sub("get", "-o", "xml").returncode == 2


def test_unknown_object_is_404_with_hint(sub: Sub) -> None:
    proc = sub("get", "model", "nope")
    assert proc.returncode == 1
    assert "not found" in proc.stderr and "sub get models" in proc.stderr
    proc = sub("get", "pods")
    assert proc.returncode == 1 and "unknown kind" in proc.stderr
