"""`make bench-controlplane`: the control plane against the same work typed by hand.

Everything runs side by side in this one process tree, on the same engine and
the same (busy or idle) machine, so the ratios mean something even where the
absolute seconds do not. Printed:

1. The busybox contract pipeline from a fresh $SUBSTRATUS_HOME (build dataset,
   load, build model, train, bake the trained image, serve until GET /docs
   answers): `sub apply --wait` vs the same podman commands in sequence.
2. A source change propagated (new commit -> rebuild -> retrain -> server
   rolled) vs by hand.
3. A no-op re-apply of the 6 demo objects (CLI start-up included).
4. 1,000 objects (suspended notebooks on one model): `sub get`, a no-op
   re-apply, deleting them all, the idle daemon's CPU, its peak memory.
5. The Kubernetes operator with 1,000 suspended notebooks on the emulated API
   server (`operator_bench.py`): time from the last create to the last first
   status, its idle CPU 30 s later over 20 s (goal < 2% of a core), its memory.

Each run gets fresh content (a nonce file), so neither side reuses the other's
image layers from this benchmark. Goals (issue 8) are printed beside figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import operator_bench  # bench/, beside this script

REPO = Path(__file__).resolve().parents[1]
SUB = str(Path(sys.executable).with_name("sub"))
FIXTURES = REPO / "tests" / "fixtures" / "contract"
ENGINE = os.environ.get("SUBSTRATUS_ENGINE") or "podman"
GIT = ["git", "-c", "user.name=Bench", "-c", "user.email=bench@example.invalid", "-c", "init.defaultBranch=main"]
PARAMS = {"epochs": 2, "batchSize": 4, "dataLimit": 60}


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---- fixtures ---------------------------------------------------------------------------------

def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    for name in ("model-shell", "dataset-shell"):
        shutil.copytree(FIXTURES / name, repo / name, ignore=shutil.ignore_patterns("busybox"))
        shutil.copy2("/bin/busybox", repo / name / "busybox")
    run([*GIT, "init", "-q"], cwd=repo)
    commit(repo, "fixtures")
    return repo


def commit(repo: Path, message: str) -> None:
    for name in ("model-shell", "dataset-shell"):
        (repo / name / "src" / "nonce.txt").write_text(uuid.uuid4().hex)
    run([*GIT, "add", "-A"], cwd=repo)
    run([*GIT, "commit", "-qm", message], cwd=repo)


def touch_model(repo: Path) -> None:
    (repo / "model-shell" / "src" / "nonce.txt").write_text(uuid.uuid4().hex)
    run([*GIT, "commit", "-qam", "model change"], cwd=repo)


def manifest(repo: Path) -> str:
    src = f"url: file://{repo}"
    return f"""
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {{name: sonnets}}
spec: {{filename: sonnets.jsonl, source: {{git: {{{src}, path: dataset-shell}}}}}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {{name: bigram}}
spec: {{source: {{git: {{{src}, path: model-shell}}}}}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {{name: bigram-sonnets}}
spec:
  source: {{modelName: bigram}}
  training: {{datasetName: sonnets, params: {json.dumps(PARAMS)}}}
---
apiVersion: substratus.ai/v1
kind: Server
metadata: {{name: bigram-sonnets}}
spec: {{modelName: bigram-sonnets}}
"""


# ---- by hand ------------------------------------------------------------------------------------

class ByHand:
    """The pipeline as a person types it: git clone, podman build/run, poll /docs."""

    def __init__(self, work: Path, repo: Path) -> None:
        self.work, self.repo, self.tag = work, repo, uuid.uuid4().hex[:8]
        self.images: list[str] = []
        self.server: str = ""  # the running server's container
        self.port = 0

    def image(self, name: str) -> str:
        ref = f"localhost/bench-hand/{name}:{self.tag}"
        self.images.append(ref)
        return ref

    def pipeline(self) -> None:
        clone = self.work / "clone"
        shutil.rmtree(clone, ignore_errors=True)
        run([*GIT, "clone", "-q", f"file://{self.repo}", str(clone)])
        data, logs = self.work / "data", self.work / "dlogs"
        data.mkdir(exist_ok=True)
        logs.mkdir(exist_ok=True)
        run([ENGINE, "build", "-q", "-t", self.image("ds"), str(clone / "dataset-shell")])
        run([ENGINE, "run", "--rm", "-e", "LOAD_DATA_PATH=/data/sonnets.jsonl", "-v", f"{data}:/data",
             "-v", f"{logs}:/dataset/logs", self.image_of("ds"), "load.sh"])
        self.model(clone, data)

    def image_of(self, name: str) -> str:
        return f"localhost/bench-hand/{name}:{self.tag}"

    def model(self, clone: Path, data: Path) -> None:
        run([ENGINE, "build", "-q", "-t", self.image("m"), str(clone / "model-shell")])
        trained, mlogs = self.work / "ctx" / "trained", self.work / "mlogs"
        shutil.rmtree(self.work / "ctx", ignore_errors=True)
        trained.mkdir(parents=True)
        mlogs.mkdir(exist_ok=True)
        env = [f"TRAIN_DATA_PATH=/data/sonnets.jsonl", f"TRAIN_DATA_LIMIT={PARAMS['dataLimit']}",
               f"TRAIN_BATCH_SIZE={PARAMS['batchSize']}", f"TRAIN_EPOCHS={PARAMS['epochs']}"]
        run([ENGINE, "run", "--rm", *sum((["-e", e] for e in env), []), "-v", f"{data}:/data:ro",
             "-v", f"{trained}:/model/trained", "-v", f"{mlogs}:/model/logs", self.image_of("m"), "train.sh"])
        (self.work / "ctx" / "Dockerfile").write_text(f"FROM {self.image_of('m')}\nCOPY trained/ /model/saved/\n")
        run([ENGINE, "build", "-q", "-t", self.image("mt"), str(self.work / "ctx")])
        self.serve()

    def serve(self) -> None:
        """Serve the trained image; a roll replaces the running server on the same port (its clients
        keep their URL), as `sub` does: the old container goes first, to free the port."""
        if self.server:
            run([ENGINE, "rm", "-f", self.server])
        self.port = self.port or free_port()
        self.server = f"bench-hand-{self.tag}"
        run([ENGINE, "run", "-d", "--name", self.server, "-p", f"127.0.0.1:{self.port}:8080",
             self.image_of("mt"), "serve.sh"])
        wait_http(f"http://127.0.0.1:{self.port}/docs")

    def change(self) -> None:
        clone = self.work / "clone"
        run(["git", "pull", "-q"], cwd=clone)
        self.tag = uuid.uuid4().hex[:8]
        self.model(clone, self.work / "data")

    def cleanup(self) -> None:
        if self.server:
            subprocess.run([ENGINE, "rm", "-f", self.server], capture_output=True)
        subprocess.run([ENGINE, "rmi", "-f", *self.images], capture_output=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise TimeoutError(url)


# ---- with sub -----------------------------------------------------------------------------------

class WithSub:
    def __init__(self, work: Path) -> None:
        self.home = work / "home"
        self.env = {**os.environ, "SUBSTRATUS_HOME": str(self.home), "SUBSTRATUS_GC_PERIOD": "0"}

    def sub(self, *args: str, stdin: str | None = None) -> str:
        return run([SUB, *args], env=self.env, input=stdin).stdout

    def apply_wait(self, manifest_file: Path) -> None:
        self.sub("apply", "-f", str(manifest_file), "--wait", "--timeout", "600")

    def cleanup(self) -> None:
        images = []
        for o in json.loads(self.sub("get", "-o", "json"))["items"]:
            images.append(o.get("status", {}).get("containerImage") or "")
        subprocess.run([SUB, "delete", "-f", str(self.home.parent / "m.yaml")], env=self.env, capture_output=True)
        subprocess.run([SUB, "down"], env=self.env, capture_output=True)
        out = run([ENGINE, "images", "--format", "{{.Repository}}:{{.Tag}}"]).stdout.split()
        ours = [i for i in out if i.startswith(("localhost/substratus/dataset-default-sonnets:",
                                                "localhost/substratus/model-default-bigram"))]
        subprocess.run([ENGINE, "rmi", "-f", *ours], capture_output=True)


# ---- the figures ------------------------------------------------------------------------------------

def pipeline_round(root: Path) -> tuple[float, float, float, float]:
    """(hand pipeline, sub pipeline, hand change, sub change) seconds, each side on fresh content."""
    work_h, work_s = root / f"h-{uuid.uuid4().hex[:6]}", root / f"s-{uuid.uuid4().hex[:6]}"
    repo_h, repo_s = make_repo(work_h), make_repo(work_s)
    hand, subs = ByHand(work_h, repo_h), WithSub(work_s)
    (work_s / "m.yaml").write_text(manifest(repo_s))
    try:
        t_hand = timed(hand.pipeline)
        t_sub = timed(lambda: subs.apply_wait(work_s / "m.yaml"))
        touch_model(repo_h)
        touch_model(repo_s)
        c_hand = timed(hand.change)
        c_sub = timed(lambda: subs.apply_wait(work_s / "m.yaml"))
        server = json.loads(subs.sub("get", "server", "bigram-sonnets", "-o", "json"))["status"]["url"]
        wait_http(server + "/docs", 30)
    finally:
        hand.cleanup()
        subs.cleanup()
    return t_hand, t_sub, c_hand, c_sub


def demo_noop(root: Path, repeats: int) -> float:
    subs = WithSub(root / "demo")
    demo = REPO / "examples" / "demo"
    print(f"  applying {demo} (builds the example images the first time: minutes)", file=sys.stderr)
    subs.sub("apply", "-f", str(demo), "--wait", "--timeout", "3600")
    times = [timed(lambda: subs.sub("apply", "-f", str(demo))) for _ in range(repeats)]
    out = subs.sub("apply", "-f", str(demo))
    assert all(line.endswith("unchanged") for line in out.strip().splitlines()), out
    subprocess.run([SUB, "delete", "-f", str(demo)], env=subs.env, capture_output=True)  # servers, notebooks
    subprocess.run([SUB, "down"], env=subs.env, capture_output=True)
    return statistics.median(times)


def thousand(root: Path, n: int) -> dict[str, float]:
    subs = WithSub(root / "thousand")
    model_dir = root / "thousand" / "model"
    shutil.copytree(FIXTURES / "model-shell", model_dir, ignore=shutil.ignore_patterns("busybox"))
    shutil.copy2("/bin/busybox", model_dir / "busybox")
    docs = ["apiVersion: substratus.ai/v1\nkind: Model\nmetadata: {name: base}\nspec: {source: {dir: model}}\n"]
    docs += [f"apiVersion: substratus.ai/v1\nkind: Notebook\nmetadata: {{name: nb-{i}}}\n"
             f"spec: {{modelName: base, suspend: true}}\n" for i in range(n)]
    manifest_file = root / "thousand" / "many.yaml"
    manifest_file.write_text("---\n".join(docs))
    figures = {"apply": timed(lambda: subs.sub("apply", "-f", str(manifest_file), "--wait", "--timeout", "600"))}
    pid = int(json.loads((subs.home / "controlplane.json").read_text())["pid"])
    time.sleep(5)  # the model's readiness wakes the 1,000 notebooks: let those passes finish first
    figures["get"] = statistics.median(timed(lambda: subs.sub("get")) for _ in range(5))
    figures["noop"] = statistics.median(timed(lambda: subs.sub("apply", "-f", str(manifest_file))) for _ in range(3))
    figures["idle_cpu"] = cpu_share(pid, 10.0)
    figures["peak_mb"] = peak_memory_mb(pid)
    figures["delete"] = timed(lambda: subs.sub("delete", "-f", str(manifest_file)))
    left = json.loads(subs.sub("get", "-o", "json"))["items"]
    assert left == [], f"{len(left)} objects left after delete"
    subprocess.run([SUB, "down"], env=subs.env, capture_output=True)
    return figures


def cpu_share(pid: int, seconds: float) -> float:
    def ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    before = ticks()
    time.sleep(seconds)
    return (ticks() - before) / os.sysconf("SC_CLK_TCK") / seconds


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="pipeline rounds (median reported)")
    ap.add_argument("--objects", type=int, default=1000)
    ap.add_argument("--skip-demo", action="store_true", help="skip the demo no-op re-apply (needs the ML images)")
    ap.add_argument("--skip-operator", action="store_true", help="skip the operator at rest (emulated API server)")
    ap.add_argument("--only-operator", action="store_true", help="only the operator at rest")
    args = ap.parse_args()
    if args.only_operator:
        print(operator_bench.describe(args.objects, operator_bench.operator_at_rest(args.objects)))
        return 0
    root = Path(tempfile.mkdtemp(prefix="sub-bench-"))
    try:
        rounds = [pipeline_round(root) for _ in range(args.rounds)]
        hand, subs, c_hand, c_sub = (statistics.median(r[i] for r in rounds) for i in range(4))
        print(f"pipeline from a fresh home: sub {subs:.1f}s, by hand {hand:.1f}s, ratio {subs / hand:.2f}x "
              f"(goal <= 1.2x; rounds: {', '.join(f'{r[1]:.1f}/{r[0]:.1f}' for r in rounds)})")
        print(f"source change propagated:   sub {c_sub:.1f}s, by hand {c_hand:.1f}s, ratio {c_sub / c_hand:.2f}x "
              f"(goal <= 1.2x)")
        if not args.skip_demo:
            print(f"no-op re-apply of the demo: {demo_noop(root, 7):.3f}s (goal < 0.25s)")
        f = thousand(root, args.objects)
        print(f"{args.objects} objects: apply --wait {f['apply']:.2f}s; sub get {f['get']:.3f}s (goal < 0.25s); "
              f"no-op re-apply {f['noop']:.2f}s (goal < 1s); delete all {f['delete']:.2f}s (goal < 5s); "
              f"idle daemon CPU {100 * f['idle_cpu']:.2f}% of a core (goal < 1%); peak daemon memory "
              f"{f['peak_mb']:.0f} MB")
        if not args.skip_operator:
            print(operator_bench.describe(args.objects, operator_bench.operator_at_rest(args.objects)))
    finally:
        for home in root.glob("**/home"):  # a round that failed half-way: stop what it started
            if (home / "controlplane.json").exists():
                env = {**os.environ, "SUBSTRATUS_HOME": str(home)}
                subprocess.run([SUB, "delete", "-l", "!no-such-label"], env=env, capture_output=True)
                subprocess.run([SUB, "down"], env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
