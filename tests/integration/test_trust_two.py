"""Issue 25's holes (trust, round two), each driven end to end through `sub` and the real engine.

An attacker controls a source repository, a loader, a trainer, code in a notebook or a server;
the person running `sub` (often as root) is trusted. Every test here failed on the code before
the issue was fixed (what it did then is in its docstring) and passes now. Host files are only
ever created under the test's tmp_path. Refusals of bad input are also counted in
tests/reliability/test_bad_inputs.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Sub
from tests.integration.test_runtime_failures import HEAD, MODEL_SCRIPTS, busybox_image

DATASET_SCRIPTS = {"notebook.sh": "exec sleep 1000"}


def escape_dockerfile(target: Path, secret: Path) -> str:
    """CVE-2024-1753 in buildah < 1.35.1: a bind mount `from` a stage whose /link -> / binds the
    host's root read-write. The stage is unique (a fresh echo) so that podman builds it in this
    build: with its layers cached the step fails instead of escaping."""
    return (f"FROM scratch AS link\nCOPY busybox /bin/busybox\n"
            f'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox ln -s / /link && /bin/busybox echo {time.time_ns()} > /u"]\n'
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
            "RUN mkdir -p /tmp /model/saved\n"
            f"RUN --mount=type=bind,from=link,source=/link,target=/x,rw "
            f"cat /x{secret} > /model/saved/leak; echo pwned > /x{target}\n"
            + "".join(f"COPY {n} /usr/local/bin/{n}\n" for n in MODEL_SCRIPTS) + "WORKDIR /model\n")


def test_a_dockerfile_cannot_bind_the_host_root(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    """Item 1: this dir Model read a 0600 host file into its image, wrote PWNED on the host and
    became Ready. Now `sub apply` refuses the source, naming the instruction, before any build."""
    secret, target = tmp_path / "host-secret", tmp_path / "PWNED"
    secret.write_text("HOST-SECRET\n")
    secret.chmod(0o600)
    img = busybox_image(tmp_path / "img", busybox, "/model", MODEL_SCRIPTS)
    (img / "Dockerfile").write_text(escape_dockerfile(target, secret))
    (tmp_path / "m.yaml").write_text(f"{HEAD}kind: Model\nmetadata: {{name: m}}\nspec: {{source: {{dir: img}}}}\n")
    proc = sub("apply", "-f", str(tmp_path / "m.yaml"), "--wait", "--timeout", "240")
    assert not target.exists(), "the build wrote a file on the host"
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "spec.source.dir" in proc.stderr and "from=" in proc.stderr and "CVE-2024-1753" in proc.stderr
    assert json.loads(sub.ok("get", "-o", "json")) == {"items": []}


def test_a_git_source_takes_the_same_refusal(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    """Item 1, git: a repository with the same Dockerfile went the same build path."""
    secret, target = tmp_path / "host-secret", tmp_path / "PWNED"
    secret.write_text("HOST-SECRET\n")
    secret.chmod(0o600)
    repo = busybox_image(tmp_path / "repo", busybox, "/model", MODEL_SCRIPTS)
    (repo / "Dockerfile").write_text(escape_dockerfile(target, secret))
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "escape"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    (tmp_path / "m.yaml").write_text(f"{HEAD}kind: Model\nmetadata: {{name: m}}\n"
                                     f"spec: {{source: {{git: {{url: '{repo}'}}}}}}\n")
    proc = sub("apply", "-f", str(tmp_path / "m.yaml"), "--wait", "--timeout", "240")
    assert not target.exists(), "the build wrote a file on the host"
    assert proc.returncode == 1 and "spec.source.git" in proc.stderr and "from=" in proc.stderr, proc.stderr


def test_the_control_plane_says_which_known_escapes_apply(sub: Sub, engine: str) -> None:
    """Item 1: nothing said which published escapes the engine, builder and runc have."""
    from substratus.runtimes.advisories import engine_versions, known_escapes

    expected = known_escapes(engine_versions(engine))
    sub.ok("up")
    log = sub.home / "controlplane.log"
    deadline = time.monotonic() + 60
    while "known escape(s) apply" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = log.read_text()
    assert f"{len(expected)} known escape(s) apply" in text
    for advisory in expected:
        assert advisory.cve in text
    if engine == "podman":  # this machine: Debian 12's podman 4.3.1, buildah 1.28.2
        assert "CVE-2024-1753" in text and "refuses RUN --mount with from=" in text


PLANT = "#!/bin/sh\n/bin/busybox find \"$@\"\necho \"1700000000 6 .//{target}\"\n"
# The same lie in the NUL-separated protocol, from a `sh` planted first on PATH.
PLANT_SH = ("#!/bin/busybox sh\ncase \"$2\" in *find*) /bin/busybox sh \"$@\"; "
            "printf \".//{target}\\\\0.\\\\0\\\\0\"; printf \"1700000000 6 .//{target}\\\\n1 1 .\\\\n\\\\0\"; exit 0 ;; esac\n"
            "exec /bin/busybox sh \"$@\"\n")
PLANT_TAR = "#!/bin/sh\ncase \"$*\" in *pwned.txt*) exec cat /evil.tar ;; esac\nexec /bin/busybox tar \"$@\"\n"


def evil_tar(path: Path, member: str) -> None:
    """What a notebook's own `tar -c` can answer: a member named `.//<absolute path>`."""
    import io
    import tarfile

    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(member)
        info.size, info.mtime, info.mode = 6, 1700000000, 0o644
        tar.addfile(info, io.BytesIO(b"pwned\n"))


def test_code_in_a_notebook_cannot_write_host_files_through_the_sync(sub: Sub, tmp_path: Path, busybox: Path,
                                                                   ) -> None:
    """Item 2: a notebook whose `find` (or `sh`) listed `.//<path>` and whose `tar` answered with that member
    made the host side of `sub notebook DIR` create that file (and its directories) anywhere on
    the host, as root, within 2 s. Now the path is refused and reported, and the sync goes on
    with the ordinary files."""
    outside = tmp_path / "outside" / "deep"
    target = outside / "pwned.txt"
    rel = str(target).lstrip("/")
    name = f"nbtrust-{os.getpid()}"
    d = busybox_image(tmp_path / name, busybox, "/model", dict(MODEL_SCRIPTS, **{
        "notebook.sh": f"printf '%s' '{PLANT.format(target=rel)}' > /usr/local/bin/find\n"
                       f"printf '%s' '{PLANT_TAR}' > /usr/local/bin/tar\n"
                       f"printf '%s' '{PLANT_SH.format(target=rel)}' > /usr/local/bin/sh\n"
                       "chmod +x /usr/local/bin/find /usr/local/bin/tar /usr/local/bin/sh\n"
                       "(sleep 5; echo ordinary > /model/ordinary.txt) &\n"
                       "mkdir -p /w && echo ok > /w/index.html && exec httpd -f -p 8888 -h /w"}),
        extra="COPY evil.tar /evil.tar\n")
    evil_tar(d / "evil.tar", f".//{rel}")
    from tests.integration.conftest import SUB, Lines

    err = open(tmp_path / "notebook.err", "w+")
    proc = subprocess.Popen([SUB, "notebook", name, "--no-open", "--interval", "0.5"], cwd=tmp_path, env=sub.env,
                            stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        Lines(proc).next(timeout=420)
        deadline = time.monotonic() + 60
        while not (d / "ordinary.txt").exists() and time.monotonic() < deadline and not target.exists():
            time.sleep(0.2)
        time.sleep(3)  # a few more rounds
        assert not target.exists() and not outside.exists(), "the sync wrote outside DIR"
        assert (d / "ordinary.txt").read_text() == "ordinary\n", "the ordinary file still syncs"
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        err.seek(0)
        log = err.read()
        remove_images_named(f"model-default-{name}")  # a name of this test's own: nobody else's image
    assert "refused" in log and rel in log, log


def remove_images_named(repository_part: str) -> None:
    from substratus.runtimes.engine import detect_engine

    engine = detect_engine(os.environ.get("SUBSTRATUS_ENGINE") or None)
    tags = subprocess.run([engine, "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                          text=True).stdout.split()
    mine = [t for t in tags if repository_part in t.split(":")[0]]
    if mine:
        subprocess.run([engine, "rmi", "-f", "--", *mine], capture_output=True)


def dataset(tmp_path: Path, busybox: Path, load: str) -> Path:
    busybox_image(tmp_path / "ds", busybox, "/dataset", {"load.sh": load, **DATASET_SCRIPTS})
    (tmp_path / "d.yaml").write_text(f"{HEAD}kind: Dataset\nmetadata: {{name: d}}\n"
                                     "spec: {filename: d.jsonl, source: {dir: ds}}\n")
    return tmp_path / "d.yaml"


def test_a_loader_cannot_make_the_control_plane_hash_a_host_file(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    """Item 3: load.sh made LOAD_DATA_PATH a link to a host file; the control plane followed it,
    published that file's sha256 as status.digest and marked the Dataset Ready."""
    secret = tmp_path / "host-secret"
    secret.write_text("HOST-SECRET\n")
    secret.chmod(0o600)
    proc = sub("apply", "-f", str(dataset(tmp_path, busybox, f'ln -s {secret} "$LOAD_DATA_PATH"')), "--wait",
               "--timeout", "240")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(sub.ok("get", "dataset", "d", "-o", "json"))
    assert "digest" not in doc["status"] and not doc["status"].get("ready")
    assert "LoadFailed" in proc.stderr and "/data/d.jsonl" in proc.stderr and "link" in proc.stderr


def test_a_trainer_cannot_leave_links_out_of_its_output(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    """Item 3, /model/trained: train.sh left a link to a host file there and the Model was Trained."""
    secret = tmp_path / "host-secret"
    secret.write_text("HOST-SECRET\n")
    dataset(tmp_path, busybox, 'echo "{}" > "$LOAD_DATA_PATH"')
    busybox_image(tmp_path / "base", busybox, "/model", dict(MODEL_SCRIPTS, **{
        "train.sh": f"echo weights > /model/trained/ok.bin; ln -s {secret} /model/trained/weights.bin"}))
    (tmp_path / "m.yaml").write_text(
        f"{HEAD}kind: Model\nmetadata: {{name: base}}\nspec: {{source: {{dir: base}}}}\n---\n"
        f"{HEAD}kind: Model\nmetadata: {{name: tuned}}\n"
        "spec: {source: {modelName: base}, training: {datasetName: d}}\n")
    proc = sub("apply", "-f", str(tmp_path / "d.yaml"), "-f", str(tmp_path / "m.yaml"), "--wait", "--timeout", "300")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "TrainFailed" in proc.stderr and "weights.bin" in proc.stderr and "link" in proc.stderr


@pytest.mark.timeout(400)
def test_a_sparse_output_is_refused_at_once(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    """Item 4: a 24 GiB sparse file (0 blocks on disk) cost 62 s of hashing on one of the control
    plane's four action threads, then the Dataset was Ready. Now it is refused in a moment."""
    started = time.monotonic()
    proc = sub("apply", "-f", str(dataset(tmp_path, busybox, 'truncate -s 24G "$LOAD_DATA_PATH"')), "--wait",
               "--timeout", "300")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "LoadFailed" in proc.stderr and "sparse" in proc.stderr, proc.stderr
    assert time.monotonic() - started < 60


# A server in shell: /docs answers, /metrics answers with a body of $BIG bytes (endless when 0).
HANDLER = """read -r method path rest
while read -r line; do [ "$(printf %s "$line" | tr -d '\\r')" = "" ] && break; done
case "$path" in
  /docs) printf 'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok' ;;
  /metrics) printf 'HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nConnection: close\\r\\n\\r\\n# TYPE x counter\\n'
            yes 'x_total 1' | head -c "$BIG" ;;
  *) printf 'HTTP/1.1 404 Not Found\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n' ;;
esac"""


def login(base: str, secret: str) -> "object":
    import httpx

    code = httpx.post(f"{base}/api/v1/dashboard/codes", headers={"Authorization": f"Bearer {secret}"},
                      timeout=10).json()["code"]
    client = httpx.Client(base_url=base, timeout=60)
    resp = client.post("/ui/login", data={"code": code}, headers={"Origin": base}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/", resp.text
    return client


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.timeout(400)
def test_a_servers_metrics_cannot_fill_the_control_planes_memory(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    """Item 5: opening a server's dashboard page read its /metrics whole: a 160 MB body took the
    control plane from 65 MB to 1.44 GB peak. Now at most 64 KiB of it is read, within 3 s."""
    scripts = dict(MODEL_SCRIPTS, **{"serve.sh": "exec nc -ll -p 8080 -e /usr/local/bin/handler.sh",
                                     "handler.sh": HANDLER})
    busybox_image(tmp_path / "img", busybox, "/model", scripts, extra="ENV BIG=200000000\n")
    (tmp_path / "s.yaml").write_text(f"{HEAD}kind: Model\nmetadata: {{name: m}}\nspec: {{source: {{dir: img}}}}\n---\n"
                                     f"{HEAD}kind: ModelServer\nmetadata: {{name: s}}\nspec: {{modelName: m}}\n")
    sub.ok("apply", "-f", str(tmp_path / "s.yaml"), "--wait", "--timeout", "240")
    ep = json.loads((sub.home / "controlplane.json").read_text())
    pid, base = int(ep["pid"]), str(ep["url"])
    client = login(base, (sub.home / "token").read_text().strip())
    before = peak_rss_mb(pid)
    started = time.monotonic()
    page = client.get("/ui/api/objects/modelserver/default/s")  # type: ignore[attr-defined]
    took = time.monotonic() - started
    after = peak_rss_mb(pid)
    print(f"page in {took:.1f}s; control plane peak RSS {before:.0f} MB -> {after:.0f} MB")
    assert page.status_code == 200
    assert after - before < 50, f"the control plane's peak memory grew by {after - before:.0f} MB"
    assert took < 10


def described_server(sub: Sub) -> dict[str, Any]:
    from substratus.cli.client import Client

    return dict(Client(sub.home).describe("ModelServer", "default", "s"))


def server_model(tmp_path: Path, busybox: Path, extra_scripts: dict[str, str] | None = None) -> Path:
    scripts = dict(MODEL_SCRIPTS, **{"serve.sh": "mkdir -p /w && echo ok > /w/docs && exec httpd -f -p 8080 -h /w"},
                   **(extra_scripts or {}))
    return busybox_image(tmp_path / "img", busybox, "/model", scripts)


def test_containers_have_bounded_logs_and_memory_by_default(sub: Sub, tmp_path: Path, busybox: Path,
                                                             engine: str) -> None:
    """Item 7: a container's output had no size cap and a container no memory limit by default
    (seen in `podman inspect`)."""
    server_model(tmp_path, busybox)
    (tmp_path / "s.yaml").write_text(f"{HEAD}kind: Model\nmetadata: {{name: m}}\nspec: {{source: {{dir: img}}}}\n---\n"
                                     f"{HEAD}kind: ModelServer\nmetadata: {{name: s}}\nspec: {{modelName: m}}\n")
    sub.ok("apply", "-f", str(tmp_path / "s.yaml"), "--wait", "--timeout", "240")
    [name] = [c["name"] for c in described_server(sub)["containers"]]
    host = json.loads(subprocess.run([engine, "inspect", name], capture_output=True, text=True).stdout)[0]["HostConfig"]
    total = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal:"))) * 1024
    assert 0 < host["Memory"] <= total * 0.75, host["Memory"]
    log = host["LogConfig"]
    assert (log.get("Size") or log.get("Config", {}).get("max-size", "")).lower() in ("16mb", "16m"), log


def test_jobs_cannot_reach_another_objects_server(sub: Sub, tmp_path: Path, busybox: Path, engine: str) -> None:
    """Item 8: every job and server sat on the engine's default bridge, so a loader reached another
    object's server at its container address (no token needed there). Now a server is reachable
    only through its port on the host's loopback, and a trainer has no network at all."""
    server_model(tmp_path, busybox)
    (tmp_path / "s.yaml").write_text(f"{HEAD}kind: Model\nmetadata: {{name: m}}\nspec: {{source: {{dir: img}}}}\n---\n"
                                     f"{HEAD}kind: ModelServer\nmetadata: {{name: s}}\nspec: {{modelName: m}}\n")
    sub.ok("apply", "-f", str(tmp_path / "s.yaml"), "--wait", "--timeout", "240")
    described = described_server(sub)
    [name] = [c["name"] for c in described["containers"]]
    port = int(described["status"]["url"].rsplit(":", 1)[1])
    nets = json.loads(subprocess.run([engine, "inspect", name], capture_output=True, text=True).stdout)[0]
    addresses = {n.get("IPAddress") for n in (nets["NetworkSettings"].get("Networks") or {}).values()}
    targets = [f"{a} 8080" for a in addresses if a] + [f"10.88.0.1 {port}", f"10.0.2.2 {port}", f"172.17.0.1 {port}"]
    probe = "; ".join(f"printf 'GET /docs HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {t} | head -1 | grep -q 200 && "
                      f"echo 'REACHED {t}'" for t in targets)
    dataset(tmp_path, busybox, f"({probe}; echo done) > \"$LOAD_DATA_PATH\"")
    sub.ok("apply", "-f", str(tmp_path / "d.yaml"), "--wait", "--timeout", "240")
    data = Path(json.loads(sub.ok("get", "dataset", "d", "-o", "json"))["status"]["url"].removeprefix("file://"))
    assert "REACHED" not in data.read_text(), data.read_text()
