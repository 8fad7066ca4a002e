"""Figure 1: every bad input is refused with the field or path named, the right exit or status
code, and changes nothing: nothing stored, no container or image created, no command run.

Inputs come through the four doors a user has: manifests (`sub apply`), CLI flags, the HTTP
API, and the control plane's environment. Every hole of issue 7 is among the cases. So are
issue 25's: Dockerfiles that ask the builder for what it cannot confine and IPv6 addresses at
the door, and (`HOSTILE`, counted in the same figure) what an untrusted container does once it
runs: a loader's or trainer's output that links to a host file, a sparse or special output, a
notebook that lists paths outside DIR, a server with an endless /metrics. Each of those is
refused (the job fails naming the path, the path is never synced, the body is never read
whole) and leaves the host as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

from tests.integration.conftest import Sub, cleanup, copy_fixture
from tests.reliability.conftest import containers_of, images_with, instance_of, remove_images

HEAD = "apiVersion: substratus.ai/v1\nmetadata: {name: bad, namespace: reliability}\n"
NS = "-reliability-"  # object images are named <kind>-<namespace>-<name>


def model(spec: str) -> str:
    return f"{HEAD}kind: Model\nspec: {spec}\n"


def git_model(url: str, extra: str = "") -> str:
    return model(f"{{source: {{git: {{url: '{url}'{extra}}}}}}}")


def server(extra: str = "") -> str:
    return f"{HEAD}kind: ModelServer\nspec: {{modelName: base{extra}}}\n"


@dataclass(frozen=True)
class Case:
    via: str                      # apply | cli | api | env
    data: Any
    code: int
    words: tuple[str, ...]
    prepare: Optional[Callable[[Path], None]] = field(default=None, compare=False)


def fifo(d: Path) -> None:
    os.mkfifo(d / "src" / "pipe")


def unix_socket(d: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(d / "src" / "sock"))
    s.close()


def link(target: str) -> Callable[[Path], None]:
    def plant(d: Path) -> None:
        (d / "src" / "lnk").symlink_to(target)

    plant.__name__ = f"link to {target}"
    return plant


def no_dockerfile(d: Path) -> None:
    (d / "src" / "Dockerfile").unlink()


def dockerfile_line(line: str) -> Callable[[Path], None]:
    """Issue 25 item 1: a line the builder cannot confine, added to the source's Dockerfile."""
    def spoil(d: Path) -> None:
        with open(d / "src" / "Dockerfile", "a") as fh:
            fh.write(line + "\n")

    spoil.__name__ = f"Dockerfile + {line}"
    return spoil


DIR = model("{source: {dir: src}}")
RES = "{source: {dir: src}, resources: %s}"

CASES: dict[str, Case] = {
    # -- hole 1: git URLs that run commands, and other malformed git sources
    "git-upload-pack": Case("apply", git_model("--upload-pack=touch MARK;://x"), 1,
                            ("spec.source.git.url", "starts with '-'")),
    "git-ext-helper": Case("apply", git_model("ext::sh -c touch% MARK"), 1, ("spec.source.git.url", "ext::")),
    "git-fd-helper": Case("apply", git_model("fd::3"), 1, ("spec.source.git.url", "remote helpers")),
    "git-ftp-scheme": Case("apply", git_model("ftp://host/repo"), 1, ("spec.source.git.url", "'ftp'")),
    "git-relative-path": Case("apply", git_model("../repo"), 1, ("spec.source.git.url", "relative path")),
    "git-host-option": Case("apply", git_model("ssh://-oProxyCommand=touch MARK/x"), 1,
                            ("spec.source.git.url", "host")),
    "git-branch-option": Case("apply", git_model("/srv/repo", ", branch: '--upload-pack=touch MARK'"), 1,
                              ("spec.source.git.branch", "must not start with '-'")),
    "git-branch-dotdot": Case("apply", git_model("/srv/repo", ", branch: 'a..b'"), 1,
                              ("spec.source.git.branch", "'..'")),
    "git-path-escape": Case("apply", git_model("/srv/repo", ", path: '../../etc'"), 1,
                            ("spec.source.git.path", "'..'")),
    "git-not-a-repo": Case("apply", git_model("file:///nonexistent/repo.git"), 1,
                           ("spec.source.git.url", "cannot read")),
    # -- hole 3: credentials in git URLs
    "git-password": Case("apply", git_model("https://user:hunter2@example.invalid/r"), 1,
                         ("spec.source.git.url", "credential helper")),
    "git-token-user": Case("apply", git_model("https://ghp_token@example.invalid/r"), 1,
                           ("spec.source.git.url", "credential helper")),
    "git-scp-password": Case("apply", git_model("git:hunter2@example.invalid:r"), 1,
                             ("spec.source.git.url", "credential helper")),
    # -- hole 7: what a dir source may hold
    "dir-fifo": Case("apply", DIR, 1, ("spec.source.dir", "src/pipe", "FIFO"), fifo),
    "dir-socket": Case("apply", DIR, 1, ("spec.source.dir", "src/sock", "socket"), unix_socket),
    "dir-dangling-link": Case("apply", DIR, 1, ("spec.source.dir", "src/lnk", "dangling"), link("gone")),
    "dir-link-to-host": Case("apply", DIR, 1, ("spec.source.dir", "src/lnk", "outside"), link("/etc/shadow")),
    "dir-link-up": Case("apply", DIR, 1, ("spec.source.dir", "src/lnk", "outside"), link("../../..")),
    "dir-no-dockerfile": Case("apply", DIR, 1, ("spec.source.dir", "no Dockerfile"), no_dockerfile),
    "dir-missing": Case("apply", model("{source: {dir: nowhere}}"), 1, ("spec.source.dir", "does not exist")),
    # -- issue 25 item 1: what a Dockerfile may ask of the builder
    "build-mount-from": Case("apply", DIR, 1, ("spec.source.dir", "from=", "CVE-2024-1753"),
                             dockerfile_line("RUN --mount=type=bind,from=link,source=/link,target=/x,rw true")),
    "build-cache-mount": Case("apply", DIR, 1, ("spec.source.dir", "type=cache"),
                              dockerfile_line("RUN --mount=type=cache,target=/root/.cache true")),
    "build-bind-up": Case("apply", DIR, 1, ("spec.source.dir", "leaves the build context"),
                          dockerfile_line("RUN --mount=type=bind,source=../..,target=/x true")),
    "build-workdir-proc": Case("apply", DIR, 1, ("spec.source.dir", "CVE-2024-21626"),
                               dockerfile_line("WORKDIR /proc/self/fd/7")),
    "build-onbuild": Case("apply", DIR, 1, ("spec.source.dir", "ONBUILD"),
                          dockerfile_line("ONBUILD RUN --mount=from=busybox,target=/x true")),
    "build-network-host": Case("apply", DIR, 1, ("spec.source.dir", "--network"),
                               dockerfile_line("RUN --network=host true")),
    # -- hole 8: spec.resources
    "res-memory-unit": Case("apply", model(RES % "{limits: {memory: 4GB}}"), 1,
                            ("spec.resources.limits.memory", "not a Kubernetes quantity")),
    "res-memory-tiny": Case("apply", model(RES % "{limits: {memory: 1Ki}}"), 1,
                            ("spec.resources.limits.memory", "at least 6Mi")),
    "res-cpu-negative": Case("apply", model(RES % "{limits: {cpu: '-1'}}"), 1, ("spec.resources.limits.cpu",)),
    "res-cpu-bool": Case("apply", server(", resources: {limits: {cpu: true}}"), 1,
                         ("spec.resources.limits.cpu", "true/false")),
    "res-request-over-limit": Case("apply", model(RES % "{limits: {cpu: '1'}, requests: {cpu: '2'}}"), 1,
                                   ("spec.resources", "must not exceed")),
    "res-unknown-resource": Case("apply", model(RES % "{limits: {nvidia.com/gpu: 1}}"), 1,
                                 ("spec.resources.limits.nvidia.com/gpu", "unknown field")),
    # -- the rest of the schema
    "label-value-long": Case("apply", f"{HEAD.replace('namespace: reliability', 'namespace: reliability, labels: {a: ' + 'x' * 70 + '}')}kind: Model\nspec: {{source: {{dir: src}}}}\n",
                             1, ("metadata.labels", "at most 63")),
    "label-key-bad": Case("apply", HEAD.replace("namespace: reliability", "namespace: reliability, labels: {'a/b/c': x}")
                          + "kind: Model\nspec: {source: {dir: src}}\n", 1, ("metadata.labels", "label key")),
    "name-not-dns": Case("apply", HEAD.replace("name: bad", "name: Bad_Name") + "kind: Model\nspec: {source: {dir: src}}\n",
                         1, ("metadata.name", "DNS-1123")),
    "namespace-bad": Case("apply", HEAD.replace("namespace: reliability", "namespace: '-x'")
                          + "kind: Model\nspec: {source: {dir: src}}\n", 1, ("metadata.namespace",)),
    "filename-slash": Case("apply", f"{HEAD}kind: Dataset\nspec: {{filename: a/b.jsonl, source: {{dir: src}}}}\n", 1,
                           ("spec.filename", "path separator")),
    "unknown-field": Case("apply", server(", replicas: 2"), 1, ("spec.replicas", "unknown field")),
    "server-ipv6-address": Case("apply", server(", address: '::1'"), 1, ("spec.address", "IPv6")),  # issue 25 item 6
    "unknown-kind": Case("apply", f"{HEAD}kind: Pipeline\nspec: {{}}\n", 1, ("kind", "unknown kind")),
    "wrong-api-version": Case("apply", HEAD.replace("substratus.ai/v1", "v1") + "kind: Model\nspec: {source: {dir: src}}\n",
                              1, ("apiVersion",)),
    "missing-field": Case("apply", f"{HEAD}kind: Dataset\nspec: {{source: {{dir: src}}}}\n", 1,
                          ("spec.filename", "required")),
    "epochs-zero": Case("apply", model("{source: {dir: src}, training: {datasetName: d, params: {epochs: 0}}}"), 1,
                        ("spec.training.params.epochs",)),
    "compute-tpu": Case("apply", model("{source: {dir: src}, compute: {types: [TPU]}}"), 1,
                        ("spec.compute.types",)),
    "missing-reference": Case("apply", server(), 1, ("spec.modelName", "'base' does not exist")),
    "self-reference": Case("apply", model("{source: {modelName: bad}}"), 1, ("spec", "refer to itself")),
    "notebook-both": Case("apply", f"{HEAD}kind: Notebook\nspec: {{modelName: a, datasetName: b}}\n", 1,
                          ("spec", "exactly one")),
    "malformed-yaml": Case("apply", f"{HEAD}kind: Model\nspec: {{source: {{dir: src}}\n", 1, ("malformed YAML", "line")),
    "duplicate-object": Case("apply", DIR + "---\n" + DIR, 1, ("document 2", "model/bad", "more than once")),
    # -- CLI flags (usage errors: exit 2, the option named)
    "cli-apply-no-file": Case("cli", ["apply"], 2, ("-f",)),
    "cli-output-format": Case("cli", ["get", "-o", "xml"], 2, ("-o", "xml")),
    "cli-timeout-zero": Case("cli", ["apply", "-f", "x.yaml", "--timeout", "0"], 2, ("--timeout",)),
    "cli-verify-skip": Case("cli", ["verify", "model", "src", "--skip", "bogus"], 2, ("--skip", "bogus")),
    "cli-delete-name": Case("cli", ["delete", "model"], 2, ("KIND NAME",)),
    "cli-verify-kind": Case("cli", ["verify", "pipeline", "src"], 2, ("pipeline", "'model', 'dataset'")),
    # -- the HTTP API (hole 2: authentication; bounded bodies)
    "api-no-auth": Case("api", ("GET", "/api/v1/objects", None, {}), 401, ("token",)),
    "api-empty-auth": Case("api", ("GET", "/api/v1/objects", None, {"Authorization": ""}), 401, ("token",)),
    "api-bearer-empty": Case("api", ("GET", "/api/v1/objects", None, {"Authorization": "Bearer "}), 401, ("token",)),
    "api-wrong-token": Case("api", ("POST", "/api/v1/apply", {"objects": []}, {"Authorization": "Bearer " + "w" * 43}),
                            401, ("token",)),
    "api-body-too-large": Case("api", ("POST", "/api/v1/apply", b"{" + b" " * (9 * 2**20) + b"}", None), 413,
                               ("body", "too large")),
    "api-objects-not-list": Case("api", ("POST", "/api/v1/apply", {"objects": "x"}, None), 422, ("objects",)),
    "api-too-many-objects": Case("api", ("POST", "/api/v1/apply", {"objects": [{}] * 10001}, None), 422,
                                   ("objects", "at most 10000")),
    "api-object-not-mapping": Case("api", ("POST", "/api/v1/apply", {"objects": [7]}, None), 422,
                                   ("objects",)),
    "api-git-upload-pack": Case("api", ("POST", "/api/v1/apply", {"objects": [{
        "apiVersion": "substratus.ai/v1", "kind": "Model", "metadata": {"name": "bad", "namespace": "reliability"},
        "spec": {"source": {"git": {"url": "--upload-pack=touch MARK;://x"}}}}]}, None), 422,
        ("spec.source.git.url", "starts with '-'")),
    "api-server-ipv6": Case("api", ("POST", "/api/v1/apply", {"objects": [{
        "apiVersion": "substratus.ai/v1", "kind": "ModelServer", "metadata": {"name": "bad", "namespace": "reliability"},
        "spec": {"modelName": "base", "address": "::"}}]}, None), 422, ("spec.address", "IPv6")),
    "api-not-json": Case("api", ("POST", "/api/v1/apply", b"not json", None), 422, ("json",)),
    "api-unknown-kind-path": Case("api", ("GET", "/api/v1/objects/pipeline/default/x", None, None), 422,
                                  ("pipeline",)),
    "api-logs-missing": Case("api", ("GET", "/api/v1/objects/model/default/ghost/logs?follow=true", None, None), 404,
                             ("ghost",)),
    "api-watch-negative-version": Case("api", ("GET", "/api/v1/watch?resourceVersion=-1", None, None), 422,
                                       ("resourceVersion",)),
    "api-watch-huge-timeout": Case("api", ("GET", "/api/v1/watch?timeoutSeconds=999999", None, None), 422,
                                   ("timeoutSeconds",)),
    # -- the control plane's environment
    "env-port": Case("env", {"SUBSTRATUS_PORT": "http"}, 1, ("SUBSTRATUS_PORT",)),
    "env-build-timeout": Case("env", {"SUBSTRATUS_BUILD_TIMEOUT": "-5"}, 1, ("SUBSTRATUS_BUILD_TIMEOUT",)),
    "env-ready-timeout": Case("env", {"SUBSTRATUS_READY_TIMEOUT": "soon"}, 1, ("SUBSTRATUS_READY_TIMEOUT",)),
    "env-max-output": Case("env", {"SUBSTRATUS_MAX_OUTPUT": "lots"}, 1, ("SUBSTRATUS_MAX_OUTPUT",)),
}


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Iterator[Sub]:
    sub = Sub(tmp_path_factory.mktemp("bad") / "home")
    sub.ok("up")
    yield sub
    cleanup(sub, engine)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, busybox: Path) -> Path:
    """A good model source the cases point at (copied when a case spoils it)."""
    return copy_fixture("model-shell", tmp_path_factory.mktemp("src") / "src", busybox)


@pytest.fixture(scope="module")
def tally(figures: dict[str, Any], plane: Sub, engine: str) -> Iterator[dict[str, int]]:
    counts = {"cases": 0, "refused": 0, "hostile": 0}
    yield counts
    # Whatever a case set off in the background has had the whole module to show up.
    assert containers_of(engine, instance_of(plane.home)) == [] and images_with(engine, NS) == []
    summary = (f"{counts['refused']}/{counts['cases']} distinct cases refused with the field or path named: "
               f"{counts['cases'] - counts['hostile']} bad inputs (nothing stored, nothing run), "
               f"{counts['hostile']} hostile containers (nothing published, no host file touched)")
    figures["bad_inputs"] = {**counts, "summary": summary}


def api_call(sub: Sub, method: str, path: str, body: Any, headers: Optional[dict[str, str]]) -> tuple[int, str]:
    import http.client

    ep = json.loads((sub.home / "controlplane.json").read_text())
    token = (sub.home / "token").read_text().strip()
    send = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"} if headers is None else headers
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", int(ep["port"]), timeout=60)
    try:
        conn.request(method, path, body=raw, headers=send)
        resp = conn.getresponse()
        return resp.status, resp.read(20000).decode(errors="replace")
    finally:
        conn.close()


def run_case(case: Case, sub: Sub, work: Path, source: Path) -> tuple[int, str]:
    marker = work / "MARK"

    def fill(text: str) -> str:
        return text.replace("MARK", str(marker))

    if case.prepare:
        shutil.copytree(source, work / "src", symlinks=True)
        case.prepare(work)
    else:
        (work / "src").symlink_to(source)
    if case.via == "apply":
        (work / "m.yaml").write_text(fill(case.data))
        proc = sub("apply", "-f", str(work / "m.yaml"), timeout=120)
        return proc.returncode, proc.stdout + proc.stderr
    if case.via == "cli":
        proc = subprocess.run([*sub_argv(), *case.data], env=sub.env, capture_output=True, text=True, timeout=120,
                              cwd=work, stdin=subprocess.DEVNULL)
        return proc.returncode, proc.stdout + proc.stderr
    if case.via == "api":
        method, path, body, headers = case.data
        if isinstance(body, dict):
            body = json.loads(fill(json.dumps(body)))
        return api_call(sub, method, path, body, headers)
    assert case.via == "env"
    fresh = Sub(work / "home", **case.data)
    proc = fresh("up", timeout=120)
    assert not (work / "home" / "state.db").exists(), "a refused setting must not start a control plane"
    return proc.returncode, proc.stdout + proc.stderr


def sub_argv() -> list[str]:
    from tests.integration.conftest import SUB

    return [SUB]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_and_changes_nothing(name: str, plane: Sub, tmp_path: Path, source: Path,
                                                 engine: str, tally: dict[str, int]) -> None:
    tally["cases"] += 1
    case = CASES[name]
    code, out = run_case(case, plane, tmp_path, source)
    assert code == case.code, f"{name}: expected {case.code}, got {code}:\n{out}"
    for word in case.words:
        assert word.lower() in out.lower(), f"{name}: {word!r} not in:\n{out}"
    assert "Traceback" not in out and "Internal Server Error" not in out
    assert not (tmp_path / "MARK").exists(), f"{name}: a command in the input ran"
    status, body = api_call(plane, "GET", "/api/v1/objects", None, None)
    assert status == 200 and json.loads(body)["items"] == [], f"{name}: something was stored"
    assert containers_of(engine, instance_of(plane.home)) == [], f"{name}: a container was created"
    tally["refused"] += 1


@dataclass(frozen=True)
class Hostile:
    """A container that misbehaves once it runs (issue 25): `script` is its load.sh (or train.sh),
    SECRET a 0600 host file it aims at; it must fail with `words`, publishing nothing."""

    script: str
    words: tuple[str, ...]
    step: str = "load"


def hostile_job(case: Hostile, sub: Sub, work: Path, busybox: Path) -> tuple[int, str]:
    from tests.integration.test_runtime_failures import MODEL_SCRIPTS, busybox_image

    secret = work / "secret"
    secret.write_text("HOST-SECRET\n")
    secret.chmod(0o600)
    head = "apiVersion: substratus.ai/v1\n"
    meta = "namespace: hostile"
    load = case.script if case.step == "load" else 'echo "{}" > "$LOAD_DATA_PATH"'
    busybox_image(work / "ds", busybox, "/dataset", {"load.sh": load.replace("SECRET", str(secret)),
                                                     "notebook.sh": "exec sleep 1000"})
    text = f"{head}kind: Dataset\nmetadata: {{name: d, {meta}}}\nspec: {{filename: d.jsonl, source: {{dir: ds}}}}\n"
    if case.step == "train":
        busybox_image(work / "base", busybox, "/model",
                      dict(MODEL_SCRIPTS, **{"train.sh": case.script.replace("SECRET", str(secret))}))
        text += (f"---\n{head}kind: Model\nmetadata: {{name: base, {meta}}}\nspec: {{source: {{dir: base}}}}\n---\n"
                 f"{head}kind: Model\nmetadata: {{name: tuned, {meta}}}\n"
                 "spec: {source: {modelName: base}, training: {datasetName: d}}\n")
    (work / "m.yaml").write_text(text)
    proc = sub("apply", "-f", str(work / "m.yaml"), "--wait", "--timeout", "240", timeout=400)
    out = proc.stdout + proc.stderr
    status, body = api_call(sub, "GET", "/api/v1/objects/dataset/hostile/d", None, None)
    published = json.loads(body).get("status", {}) if status == 200 else {}
    assert case.step != "load" or "digest" not in published, f"a digest was published: {published}"
    assert secret.read_text() == "HOST-SECRET\n"
    sub("delete", "-f", str(work / "m.yaml"), timeout=120)
    return proc.returncode, out


def hostile_notebook(sub: Sub, work: Path, busybox: Path) -> tuple[int, str]:
    from tests.integration.test_trust_two import test_code_in_a_notebook_cannot_write_host_files_through_the_sync

    test_code_in_a_notebook_cannot_write_host_files_through_the_sync(sub, work, busybox)  # asserts inside
    return 1, "refused: a path outside DIR, never synced"


def hostile_metrics(sub: Sub, work: Path, busybox: Path) -> tuple[int, str]:
    from tests.integration.test_trust_two import test_a_servers_metrics_cannot_fill_the_control_planes_memory

    test_a_servers_metrics_cannot_fill_the_control_planes_memory(sub, work, busybox)  # asserts inside
    return 1, "refused: the body past 64 KiB was never read"


HOSTILE: dict[str, Any] = {
    "load-link-to-host-file": Hostile('ln -s SECRET "$LOAD_DATA_PATH"', ("LoadFailed", "/data/d.jsonl", "link")),
    "load-link-to-root": Hostile('ln -s / "$LOAD_DATA_PATH"', ("LoadFailed", "/data/d.jsonl", "link")),
    "load-fifo": Hostile('mkfifo "$LOAD_DATA_PATH"', ("LoadFailed", "not a regular file")),
    "load-sparse-24g": Hostile('truncate -s 24G "$LOAD_DATA_PATH"', ("LoadFailed", "sparse")),
    "train-link-out": Hostile("echo w > /model/trained/ok.bin; ln -s SECRET /model/trained/w.bin",
                              ("TrainFailed", "/model/trained/w.bin", "outside"), step="train"),
    "train-fifo": Hostile("echo w > /model/trained/ok.bin; mkfifo /model/trained/pipe",
                          ("TrainFailed", "/model/trained/pipe", "not a regular file"), step="train"),
    "notebook-path-outside-dir": hostile_notebook,
    "server-endless-metrics": hostile_metrics,
}


@pytest.mark.parametrize("name", list(HOSTILE))
@pytest.mark.timeout(600)
def test_a_hostile_container_is_refused_and_changes_nothing(name: str, tmp_path: Path, busybox: Path, engine: str,
                                                          tally: dict[str, int]) -> None:
    """Issue 25's holes, counted in the same figure: each on a control plane of its own."""
    tally["cases"] += 1
    tally["hostile"] += 1
    case = HOSTILE[name]
    sub = Sub(tmp_path / "home")
    try:
        if isinstance(case, Hostile):
            code, out = hostile_job(case, sub, tmp_path, busybox)
            assert code == 1, f"{name}: expected 1, got {code}:\n{out}"
            for word in case.words:
                assert word.lower() in out.lower(), f"{name}: {word!r} not in:\n{out}"
        else:
            case(sub, tmp_path, busybox)
    finally:
        cleanup(sub, engine)
        remove_images(engine, images_with(engine, "-hostile-"))
    tally["refused"] += 1


def test_there_are_at_least_forty_distinct_cases() -> None:
    distinct = {(c.via, json.dumps(c.data, default=str), c.prepare and c.prepare.__name__) for c in CASES.values()}
    assert len(CASES) >= 40 and len(distinct) == len(CASES)
