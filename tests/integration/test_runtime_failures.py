"""Failures while building and running are failed conditions that say what broke and what to do."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.integration.conftest import Sub, copy_fixture

HEAD = "apiVersion: substratus.ai/v1\n"


def busybox_image(dest: Path, busybox: Path, workdir: str, scripts: dict[str, str], extra: str = "") -> Path:
    dest.mkdir(parents=True)
    (dest / "busybox").write_bytes(busybox.read_bytes())
    os.chmod(dest / "busybox", 0o755)
    for name, body in scripts.items():
        (dest / name).write_text("#!/bin/sh\n" + body + "\n")
        os.chmod(dest / name, 0o755)
    copies = "".join(f"COPY {n} /usr/local/bin/{n}\n" for n in scripts)
    (dest / "Dockerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\n'
        f"RUN mkdir -p /tmp /model/saved && echo base > /model/saved/m\n{copies}{extra}WORKDIR {workdir}\n")
    return dest


def wait_fails(sub: Sub, manifest: Path, timeout: str = "240") -> str:
    proc = sub("apply", "-f", str(manifest), "--wait", "--timeout", timeout)
    assert proc.returncode == 1, proc.stderr
    return proc.stderr


MODEL_SCRIPTS = {"serve.sh": "exec httpd -f -p 8080 -h /model", "train.sh": "echo training",
                 "notebook.sh": "exec httpd -f -p 8888 -h /model"}


def test_build_failure_shows_the_build_log(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    busybox_image(tmp_path / "img", busybox, "/model", MODEL_SCRIPTS, extra="RUN echo broken-step && false\n")
    (tmp_path / "m.yaml").write_text(f"{HEAD}kind: Model\nmetadata: {{name: m}}\nspec: {{source: {{dir: img}}}}\n")
    err = wait_fails(sub, tmp_path / "m.yaml")
    assert "BuildFailed" in err and "broken-step" in err and "sub logs model m" in err
    assert "broken-step" in sub.ok("logs", "model", "m")


def test_contract_violation_names_the_clause(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    scripts = dict(MODEL_SCRIPTS)
    del scripts["train.sh"]
    busybox_image(tmp_path / "img", busybox, "/app", scripts)
    (tmp_path / "m.yaml").write_text(f"{HEAD}kind: Model\nmetadata: {{name: m}}\nspec: {{source: {{dir: img}}}}\n")
    err = wait_fails(sub, tmp_path / "m.yaml")
    assert "ContractViolation" in err
    assert "WORKDIR /model" in err and "train.sh" in err


def test_failing_load_reports_exit_code_and_log_tail(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    busybox_image(tmp_path / "img", busybox, "/dataset",
                  {"load.sh": "echo fetching corpus; echo 'network unreachable' >&2; exit 3",
                   "notebook.sh": "sleep 1000"})
    (tmp_path / "d.yaml").write_text(
        f"{HEAD}kind: Dataset\nmetadata: {{name: d}}\nspec: {{filename: d.jsonl, source: {{dir: img}}}}\n")
    err = wait_fails(sub, tmp_path / "d.yaml")
    assert "LoadFailed" in err and "exited with code 3" in err and "network unreachable" in err


def test_load_writing_elsewhere_fails(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    busybox_image(tmp_path / "img", busybox, "/dataset",
                  {"load.sh": "echo hi > /data/other.jsonl", "notebook.sh": "sleep 1000"})
    (tmp_path / "d.yaml").write_text(
        f"{HEAD}kind: Dataset\nmetadata: {{name: d}}\nspec: {{filename: d.jsonl, source: {{dir: img}}}}\n")
    err = wait_fails(sub, tmp_path / "d.yaml")
    assert "LoadFailed" in err and "LOAD_DATA_PATH" in err


def test_empty_training_and_server_that_never_answers(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    copy_fixture("dataset-shell", tmp_path / "ds", busybox)
    scripts = dict(MODEL_SCRIPTS, **{"train.sh": "echo 'pretending to train'"})
    busybox_image(tmp_path / "lazy", busybox, "/model", scripts)
    mute = dict(MODEL_SCRIPTS, **{"serve.sh": "echo 'loading forever'; exec sleep 1000"})
    busybox_image(tmp_path / "mute", busybox, "/model", mute)
    (tmp_path / "m.yaml").write_text(
        f"{HEAD}kind: Dataset\nmetadata: {{name: d}}\nspec: {{filename: d.jsonl, source: {{dir: ds}}}}\n---\n"
        f"{HEAD}kind: Model\nmetadata: {{name: lazy}}\nspec:\n  source: {{dir: lazy}}\n"
        f"  training: {{datasetName: d}}\n---\n"
        f"{HEAD}kind: Model\nmetadata: {{name: mute}}\nspec: {{source: {{dir: mute}}}}\n---\n"
        f"{HEAD}kind: Server\nmetadata: {{name: mute}}\nspec: {{modelName: mute}}\n")
    sub.env["SUBSTRATUS_READY_TIMEOUT"] = "8"
    err = wait_fails(sub, tmp_path / "m.yaml")
    assert "TrainFailed" in err or "ServeFailed" in err
    # whichever failed first, both end failed with their reason
    deadline = time.monotonic() + 180
    while True:
        objs = {o["metadata"]["name"] + o["kind"]: o for o in json.loads(sub.ok("get", "-o", "json"))["items"]}
        lazy = objs["lazyModel"]["status"]["conditions"][-1]
        mute_status = objs["muteModelServer"]["status"]["conditions"][-1]
        if (lazy["reason"], mute_status["reason"]) == ("TrainFailed", "ServeFailed") or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert lazy["reason"] == "TrainFailed" and "/model/trained empty" in lazy["message"]
    assert mute_status["reason"] == "ServeFailed" and "loading forever" in mute_status["message"]
