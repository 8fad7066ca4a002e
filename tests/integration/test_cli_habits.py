"""kubectl habits, typed as a user types them, against one real control plane (podman, busybox fixtures).

One control plane for the module (tests run in file order and build on each
other: the model applied from stdin is the one later selected, watched,
completed and waited for), so the module costs one image build.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import SUB, Lines, Sub, cleanup, copy_fixture

HEAD = "apiVersion: substratus.ai/v1\n"
# A name of its own: image repositories are named by kind, namespace and name, and another control plane on
# the same engine (another test run) must not see this model's images as its own.
M = f"bigram-{uuid.uuid4().hex[:6]}"
BIGRAM = HEAD + f"""kind: Model
metadata: {{name: {M}, labels: {{app: demo, tier: front}}}}
spec: {{source: {{dir: bigram}}}}
"""


PROGRESS_WRITER = """for step in 1 2 3 4; do
  echo "{\\"step\\": $step, \\"total_steps\\": 4, \\"epoch\\": 1, \\"loss\\": 2.$((9 - step))}" >> /model/logs/progress.jsonl
  sleep 0.2
done
"""


@dataclass
class World:
    root: Path
    sub: Sub

    def run(self, *args: str, stdin: str = "", timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`sub ARGS` in the module's directory, with `stdin` piped in (as `cat x | sub ...`)."""
        return subprocess.run([SUB, *args], input=stdin, env=self.sub.env, cwd=self.root, capture_output=True,
                              text=True, timeout=timeout)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, engine: str, busybox: Path) -> Iterator[World]:
    root = tmp_path_factory.mktemp("habits")
    copy_fixture("model-shell", root / "bigram", busybox)
    copy_fixture("dataset-shell", root / "sonnets", busybox)
    # This copy's train.sh also keeps the contract's optional progress extension (the fixture itself does not).
    train = root / "bigram" / "bin" / "train.sh"
    train.write_text(train.read_text().replace("# tee hides awk's exit status", PROGRESS_WRITER + "# tee hides"))
    w = World(root, Sub(root / "home"))
    yield w
    cleanup(w.sub, engine)


def test_apply_from_stdin_resolves_dir_against_the_current_directory(world: World) -> None:
    r = world.run("apply", "-f", "-", stdin=BIGRAM)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"model/{M} created"
    obj = json.loads(world.sub.ok("get", "model", M, "-o", "json"))
    assert obj["spec"]["source"]["dir"] == str(world.root / "bigram")
    assert obj["metadata"]["labels"] == {"app": "demo", "tier": "front"}


def run_in_terminal(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[int, str]:
    """Run as in a terminal (stdin, stdout and stderr a pty), returning the exit code and what it drew."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, close_fds=True,
                            env={**env, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"})
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    else:
        proc.kill()
    os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def test_apply_wait_on_a_terminal_draws_progress_bars(world: World) -> None:
    (world.root / "bigram.yaml").write_text(BIGRAM)
    code, screen = run_in_terminal([SUB, "apply", "-f", "bigram.yaml", "--wait", "--timeout", "300"],
                                   world.sub.env, world.root, timeout=360)
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)  # colours and cursor moves
    assert code == 0, screen[-3000:]
    assert f"model/{M} unchanged" in screen
    assert "━" in screen and "✓ Ready" in screen, "a bar, finished with the Ready reason"
    assert "all 1 objects ready" in screen


def test_training_shows_a_progress_column_and_describe_shows_progress_and_lineage(world: World) -> None:
    ds, tuned = f"sonnets-{M[-6:]}", f"{M}-tuned"
    (world.root / "train.yaml").write_text(
        HEAD + f"kind: Dataset\nmetadata: {{name: {ds}}}\nspec: {{filename: s.jsonl, source: {{dir: sonnets}}}}\n---\n"
        + HEAD + f"kind: Model\nmetadata: {{name: {tuned}}}\nspec:\n  source: {{modelName: {M}}}\n"
        f"  training: {{datasetName: {ds}, params: {{epochs: 1, batchSize: 4, dataLimit: 40}}}}\n")
    code, screen = run_in_terminal([SUB, "apply", "-f", "train.yaml", "--wait", "--timeout", "400"],
                                   world.sub.env, world.root, timeout=450)
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert code == 0, screen[-3000:]
    assert "✓ Trained" in screen and "✓ Loaded" in screen and "100%" in screen
    [row] = [line.split() for line in world.sub.ok("get", "models").splitlines() if line.split()[1:2] == [tuned]]
    assert row[2:5] == ["yes", "Trained", "100%"], row
    text = world.sub.ok("describe", "model", tuned)
    assert "Progress:    train" in text and "Step:      4/4 (100.0%)" in text and "Loss:      2.5" in text
    assert f"Base model:  {M}  localhost/substratus/model-default-{M}:" in text
    assert f"Dataset:     {ds}  file://" in text and "digest: sha256:" in text
    assert "Params:      epochs=1, dataLimit=40, batchSize=4" in text


def test_dry_run_server_resolves_references_and_sources_and_stores_nothing(world: World) -> None:
    nb = HEAD + f"kind: Notebook\nmetadata: {{name: nb}}\nspec: {{modelName: {M}}}\n"
    r = world.run("apply", "-f", "-", "--dry-run=server", "-o", "json", stdin=nb)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{"kind": "Notebook", "namespace": "default", "name": "nb",
                                     "result": "created (dry run)", "generation": 1}]
    assert "nb" not in world.sub.ok("get", "notebooks")
    (world.root / "empty").mkdir(exist_ok=True)
    bad = (HEAD + "kind: Notebook\nmetadata: {name: nb}\nspec: {modelName: nope}\n---\n" + HEAD +
           "kind: Model\nmetadata: {name: m2}\nspec: {source: {dir: empty}}\n")
    r = world.run("apply", "-f", "-", "--dry-run=server", stdin=bad)
    assert r.returncode == 1
    assert "spec.modelName: Model 'nope' does not exist" in r.stderr


def test_dry_run_server_reports_a_source_problem_with_its_field(world: World) -> None:
    (world.root / "empty").mkdir(exist_ok=True)  # a directory without a Dockerfile
    r = world.run("apply", "-f", "-", "--dry-run=server",
                  stdin=HEAD + "kind: Model\nmetadata: {name: m2}\nspec: {source: {dir: empty}}\n")
    assert r.returncode == 1 and "spec.source.dir" in r.stderr and "Dockerfile" in r.stderr, r.stderr


def test_dry_run_client_needs_no_control_plane(world: World, tmp_path: Path) -> None:
    alone = {**world.sub.env, "SUBSTRATUS_HOME": str(tmp_path / "nowhere")}
    r = subprocess.run([SUB, "apply", "-f", "-", "--dry-run=client"], input=BIGRAM.replace("front", "Front End"),
                       env=alone, cwd=world.root, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "metadata.labels.tier: label value 'Front End'" in r.stderr
    assert not (tmp_path / "nowhere").exists()


def test_labels_select_objects_for_get_and_delete(world: World) -> None:
    more = "".join(HEAD + f"kind: Model\nmetadata: {{name: {n}, labels: {labels}}}\nspec: {{source: {{modelName: "
                   f"{M}}}}}\n---\n" for n, labels in (("alias", "{app: demo, tier: back}"),
                                                         ("old", "{legacy: 'true'}")))
    assert world.run("apply", "-f", "-", stdin=more).returncode == 0

    def names(*selector: str) -> list[str]:
        items = json.loads(world.sub.ok("get", "models", *selector, "-o", "json"))["items"]
        return sorted(o["metadata"]["name"] for o in items)

    assert names("-l", "app=demo") == ["alias", M]
    assert names("--selector", "tier in (back,side)") == ["alias"]
    assert names("-l", "app,tier notin (front),!legacy") == ["alias"]
    assert names("-l", "legacy") == ["old"]
    bad = world.sub("get", "-l", "tier in (back")
    assert bad.returncode == 1 and "--selector:" in bad.stderr and "expected ',' or ')'" in bad.stderr
    out = world.sub.ok("delete", "models", "-l", "tier=back")
    assert out.strip() == "model/alias deleted"
    assert names() == sorted([M, f"{M}-tuned", "old"])
    assert world.sub.ok("delete", "-l", "legacy=true").strip() == "model/old deleted"
    nothing = world.sub("delete", "-l", "app=nothing-here")
    assert nothing.returncode == 0 and "No objects match" in nothing.stderr


def test_a_bad_label_is_refused_with_its_field_path(world: World) -> None:
    r = world.run("apply", "-f", "-", stdin=BIGRAM.replace("tier: front", "'-tier': front"))
    assert r.returncode == 1 and "metadata.labels.-tier: label key '-tier'" in r.stderr
    assert json.loads(world.sub.ok("get", "model", M, "-o", "json"))["metadata"]["labels"]["tier"] == "front"


def test_get_watch_prints_each_change_until_ctrl_c(world: World) -> None:
    json_watch = subprocess.Popen([SUB, "get", "models", "-w", "-o", "json"], env=world.sub.env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    table_watch = subprocess.Popen([SUB, "get", "-w", "-l", "app=demo"], env=world.sub.env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    as_json, as_table = Lines(json_watch), Lines(table_watch)
    try:
        first = as_json.until(f'"name":"{M}"')
        assert json.loads(first[-1])["metadata"]["labels"]["tier"] == "front"
        header = as_table.until(M)
        assert header[0].split()[:5] == ["KIND", "NAME", "READY", "REASON", "PROGRESS"]
        assert world.run("apply", "-f", "-", stdin=BIGRAM.replace("front", "back")).stdout.strip() == \
            f"model/{M} configured"
        changed = as_json.until('"tier":"back"')
        assert all(json.loads(line)["kind"] == "Model" for line in changed), "one JSON object a line"
        assert as_table.until(M)[-1].split()[:2] == ["Model", M]
    finally:
        for p in (json_watch, table_watch):
            p.send_signal(signal.SIGINT)
    assert json_watch.wait(timeout=30) == 130 and table_watch.wait(timeout=30) == 130


def test_explain_a_field(world: World) -> None:
    out = world.sub.ok("explain", "model.spec.training.params.batchSize")
    assert "FIELD:    batchSize <integer>" in out and "DEFAULT:  1" in out and "TRAIN_BATCH_SIZE" in out


def complete(world: World, env: dict[str, str], *words: str) -> list[str]:
    """What Tab offers after `words` in bash with `source <(sub completion bash)`."""
    script = world.sub.ok("completion", "bash")
    line = " ".join(f"'{w}'" for w in words)
    prog = (f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMPREPLY=(); "
            "_sub_completion sub; printf '%s\\n' \"${COMPREPLY[@]}\"")
    path = f"{Path(SUB).parent}:{os.environ.get('PATH', '')}"
    r = subprocess.run(["bash", "-c", prog], env={**env, "PATH": path}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.splitlines() if w]


def test_completion_knows_kinds_and_object_names(world: World, tmp_path: Path) -> None:
    assert complete(world, world.sub.env, "sub", "get", "mod") == ["model", "models", "modelserver", "modelservers"]
    assert complete(world, world.sub.env, "sub", "describe", "model", M[:8]) == [M, f"{M}-tuned"]
    assert complete(world, world.sub.env, "sub", "get", "dataset", "") == [f"sonnets-{M[-6:]}"]
    assert complete(world, world.sub.env, "sub", "explain", "notebook.spec.su") == ["notebook.spec.suspend"]
    away = {**world.sub.env, "SUBSTRATUS_HOME": str(tmp_path / "no-control-plane")}
    assert complete(world, away, "sub", "describe", "model", "") == []
    assert not (tmp_path / "no-control-plane").exists(), "a Tab never starts a control plane"
