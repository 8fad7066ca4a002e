"""Issue 2's "done when": contract images written in shell + awk (no Python),
hosted in a git repository under sub-paths on a non-default branch, go
through `sub apply --wait` unchanged: loaded, trained, served, opened as a
notebook, re-applied, changed, adopted after a control-plane restart, deleted.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Sub, copy_fixture

GIT = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main"]
PARAMS = {"epochs": 2, "batchSize": 4, "dataLimit": 60}


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def make_repo(root: Path, busybox: Path) -> Path:
    repo = root / "contracts-repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "README.md").write_text("The default branch holds no images.\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "readme")
    git(repo, "checkout", "-qb", "contract-v1")
    copy_fixture("model-shell", repo / "contract" / "models" / "shell", busybox)
    copy_fixture("dataset-shell", repo / "contract" / "datasets" / "shell", busybox)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "shell contract images")
    git(repo, "checkout", "-q", "main")
    return repo


def manifest(repo: Path) -> str:
    src = f"url: file://{repo}, branch: contract-v1"
    return f"""
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {{name: sonnets}}
spec:
  filename: sonnets.jsonl
  source: {{git: {{{src}, path: contract/datasets/shell}}}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {{name: bigram}}
spec:
  source: {{git: {{{src}, path: contract/models/shell}}}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {{name: bigram-sonnets}}
spec:
  source: {{modelName: bigram}}
  training:
    datasetName: sonnets
    params: {json.dumps(PARAMS)}
---
apiVersion: substratus.ai/v1
kind: Server
metadata: {{name: bigram-sonnets}}
spec: {{modelName: bigram-sonnets}}
---
apiVersion: substratus.ai/v1
kind: Notebook
metadata: {{name: sonnets}}
spec: {{datasetName: sonnets}}
"""


def status(sub: Sub, kind: str, name: str) -> dict:
    return json.loads(sub.ok("get", kind, name, "-o", "json"))["status"]


def generate(url: str, prompt: str) -> dict:
    resp = httpx.post(f"{url}/generate", json={"prompt": prompt, "max_new_tokens": 8}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_shell_contract_images_from_git_go_through_the_whole_pipeline(sub: Sub, tmp_path: Path, busybox: Path,
                                                                    engine: str) -> None:
    repo = make_repo(tmp_path, busybox)
    m = tmp_path / "pipeline.yaml"
    m.write_text(manifest(repo))

    proc = sub("apply", "-f", str(m), "--wait", "--timeout", "400")
    assert proc.returncode == 0, proc.stderr
    assert "all 5 objects ready" in proc.stderr

    # served, on a URL taken from `sub get -o json`, and visibly trained with the params given
    server = status(sub, "server", "bigram-sonnets")
    assert server["ready"] and server["url"].startswith("http://127.0.0.1:")
    assert httpx.get(f"{server['url']}/docs", timeout=10).status_code == 200
    out = generate(server["url"], "Shall I compare")
    assert out["generation"].startswith("Shall I compare")
    flat = json.dumps(out)
    for value in PARAMS.values():
        assert str(value) in flat, f"the served model does not show param {value}: {out}"

    # the dataset notebook answers on its URL, with the data mounted
    nb = status(sub, "notebook", "sonnets")
    assert nb["ready"] and httpx.get(nb["url"], timeout=10).status_code < 500

    # suspend stops the notebook; unsuspending starts it again
    m_suspended = tmp_path / "suspended.yaml"
    m_suspended.write_text(manifest(repo).replace("spec: {datasetName: sonnets}",
                                                  "spec: {datasetName: sonnets, suspend: true}"))
    assert sub("apply", "-f", str(m_suspended), "--wait", "--timeout", "60").returncode == 0
    assert status(sub, "notebook", "sonnets")["conditions"][-1]["reason"] == "Suspended"
    assert not running(engine, sub, "notebook")
    assert sub("apply", "-f", str(m), "--wait", "--timeout", "60").returncode == 0
    assert running(engine, sub, "notebook")

    # logs -f keeps streaming the running server's output
    follow = subprocess.Popen([*sub_argv(), "logs", "server", "bigram-sonnets", "-f"], env=sub.env,
                              stdout=subprocess.PIPE, text=True)
    try:
        generate(server["url"], "follow me")
        time.sleep(3)
        assert follow.poll() is None, "logs -f ended by itself"
    finally:
        follow.terminate()
    assert "listening on :8080" in follow.communicate(timeout=10)[0]

    # logs: training output is kept after its container is gone
    logs = sub.ok("logs", "model", "bigram-sonnets")
    assert "epochs=2" in logs and "train" in logs

    # re-applying the unchanged manifest changes nothing
    started = time.monotonic()
    again = sub.ok("apply", "-f", str(m))
    print(f"re-apply of an unchanged manifest took {time.monotonic() - started:.2f}s")
    assert again.split().count("unchanged") == 5

    # the control plane restarts and adopts the running server instead of starting another
    cid = subprocess.run([engine, "ps", "-q", "--no-trunc", "--filter", "label=substratus.ai/role=server",
                          "--filter", f"label=substratus.ai/instance={instance(sub)}"],
                         capture_output=True, text=True).stdout.split()
    sub.ok("down")
    sub.ok("up")
    assert sub("apply", "-f", str(m), "--wait", "--timeout", "60").returncode == 0
    cid2 = subprocess.run([engine, "ps", "-q", "--no-trunc", "--filter", "label=substratus.ai/role=server",
                           "--filter", f"label=substratus.ai/instance={instance(sub)}"],
                          capture_output=True, text=True).stdout.split()
    assert cid == cid2 and len(cid) == 1

    # a new commit on the branch rebuilds the model, retrains and rolls the server onto it
    old_image = status(sub, "model", "bigram-sonnets")["containerImage"]
    git(repo, "checkout", "-q", "contract-v1")
    corpus = repo / "contract" / "models" / "shell" / "src" / "base-corpus.txt"
    corpus.write_text(corpus.read_text() + "\nthe quick brown fox jumps over the lazy dog\n")
    git(repo, "commit", "-qam", "more base text")
    git(repo, "checkout", "-q", "main")
    proc = sub("apply", "-f", str(m), "--wait", "--timeout", "300")
    assert proc.returncode == 0, proc.stderr
    assert "model/bigram configured" in proc.stdout and "dataset/sonnets unchanged" in proc.stdout
    new_image = status(sub, "model", "bigram-sonnets")["containerImage"]
    assert new_image != old_image
    described = sub.ok("describe", "server", "bigram-sonnets")
    assert new_image in described

    # delete stops and removes what the objects run
    sub.ok("delete", "-f", str(m))
    left = subprocess.run([engine, "ps", "-aq", "--filter", f"label=substratus.ai/instance={instance(sub)}"],
                          capture_output=True, text=True).stdout.split()
    assert left == []
    assert json.loads(sub.ok("get", "-o", "json")) == {"items": []}


def instance(sub: Sub) -> str:
    from substratus.reconcile.layout import Layout

    return Layout(sub.home.resolve()).instance


@pytest.fixture(autouse=True)
def _show_daemon_log_on_failure(request: pytest.FixtureRequest, sub: Sub) -> None:
    yield
    rep = getattr(request.node, "rep_call", None)
    log = sub.home / "controlplane.log"
    if rep is not None and rep.failed and log.exists():
        print(log.read_text()[-4000:])


def running(engine: str, sub: Sub, role: str) -> bool:
    out = subprocess.run([engine, "ps", "-q", "--filter", f"label=substratus.ai/role={role}",
                          "--filter", f"label=substratus.ai/instance={instance(sub)}"], capture_output=True, text=True)
    return bool(out.stdout.split())


def sub_argv() -> list[str]:
    from tests.integration.conftest import SUB

    return [SUB]
