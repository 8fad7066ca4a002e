"""`sub notebook DIR` as a user runs it, on the busybox model fixture: build, start, two-way sync, Ctrl-C.

The fixture's notebook.sh is busybox httpd on 8888 (the contract asks no
more); "saving in the notebook" is a write inside the container by `exec`,
which is what Jupyter's save does to the same directory.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from substratus.cli.client import Client
from substratus.runtimes.engine import EngineRuntime
from tests.integration.conftest import SUB, Lines, Sub, copy_fixture


def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Sync is promised "within a couple of seconds"; allow a loaded 2-core machine much more, but not forever."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s")


def in_box(runtime: EngineRuntime, container: str, script: str) -> tuple[int, str]:
    r = runtime.exec(container, ["sh", "-c", script], workdir="/model")
    return r.exit_code, r.stdout.decode()


def test_notebook_syncs_both_ways_and_ctrl_c_leaves_dir_complete(tmp_path: Path, sub: Sub, busybox: Path,
                                                                  runtime: EngineRuntime) -> None:
    name = f"nb-{uuid.uuid4().hex[:6]}"  # its own image repository: other control planes on this engine keep off
    d = copy_fixture("model-shell", tmp_path / name, busybox)
    (d / ".gitignore").write_text("busybox\n*.tmp\n")
    before = {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()}
    err = open(tmp_path / "notebook.err", "w+")
    proc = subprocess.Popen([SUB, "notebook", name, "--no-open", "--interval", "0.5"], cwd=tmp_path, env=sub.env,
                            stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        url = Lines(proc).next(timeout=420)
        assert url.startswith("http://127.0.0.1:") and "token=" in url, url
        [box] = [c["name"] for c in Client(sub.home).describe("Notebook", "default", name)["containers"]]

        # DIR went in at the start (excluded files did not); the image's artifacts never come out.
        assert in_box(runtime, box, "cat Dockerfile")[1] == (d / "Dockerfile").read_text()
        assert in_box(runtime, box, "test -e busybox")[0] != 0, ".gitignore'd busybox stays out"
        assert not (d / "saved").exists(), "the model's artifacts (/model/saved) never come into DIR"

        # Saved in the notebook -> appears in DIR.
        in_box(runtime, box, "echo 'from the notebook' > notes.txt && echo 'BEGIN {}' > src/made-in-nb.awk")
        eventually(lambda: (d / "notes.txt").is_file() and (d / "src" / "made-in-nb.awk").is_file(),
                   "a file saved in the notebook appearing in DIR")
        assert (d / "notes.txt").read_text() == "from the notebook\n"

        # Edited in DIR -> appears in the notebook; an excluded one does not.
        (d / "src" / "edited-in-dir.awk").write_text("BEGIN { print 1 }\n")
        (d / "scratch.tmp").write_text("not for the notebook\n")
        eventually(lambda: in_box(runtime, box, "cat src/edited-in-dir.awk")[1] == "BEGIN { print 1 }\n",
                   "a file edited in DIR appearing in the notebook")
        assert in_box(runtime, box, "test -e scratch.tmp")[0] != 0

        # A last save, then Ctrl-C: the final sync brings it, the notebook is suspended, exit 130.
        in_box(runtime, box, "echo 'saved just before Ctrl-C' > last.txt")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=180) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        err.seek(0)
        log = err.read()
    assert (d / "last.txt").read_text() == "saved just before Ctrl-C\n", log
    after = {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()}
    assert after == before | {"notes.txt", "src/made-in-nb.awk", "src/edited-in-dir.awk", "scratch.tmp",
                              "last.txt"}, "DIR is complete: nothing lost, no temporary file left"
    assert json.loads(sub.ok("get", "notebook", name, "-o", "json"))["spec"]["suspend"] is True
    assert f"notebook/{name} suspended" in log and "↓ notes.txt" in log and "↑ src/edited-in-dir.awk" in log
