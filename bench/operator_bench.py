"""The Kubernetes operator at rest, on the emulated API server (part of `make bench-controlplane`).

The same load the local figures use: N suspended Notebooks (nothing to do once each has said
so in its status). The operator is `python -m substratus.kube` in a process of its own, as the
Kubernetes tier runs it, against kmock's emulator (tests/kubernetes/cluster.py) in this process.
Printed, with goals (issue 19):

- time from the first create, and from the last create, until the last Notebook has its first
  status (`Suspended`): the operator started first and watching, then the N objects created
  by 8 clients side by side (the emulator answers one request at a time, in this process);
- the operator's idle CPU once every object has its status: the share of one core over each
  `--idle` window, all starting `--settle` seconds after the last status (kopf may still be
  working through the watch events of the last writes before that). Goal < 2% of a core at
  1,000 objects. A window of 300 s or more covers a whole period of anything that wakes every
  5 minutes (the kopf daemons of the operator before issue 19 did);
- its resident memory then (VmRSS) and its peak (VmHWM); its CPU until the last status, per object.

`python bench/operator_bench.py --objects 1000 [--idle 20 300]` on its own; `controlplane_bench.py`
calls `operator_at_rest`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the emulator lives with the Kubernetes tier's tests

from substratus.resources import crd  # noqa: E402
from substratus.runtimes.kubernetes.client import KubeApi  # noqa: E402
from tests.kubernetes.cluster import Cluster  # noqa: E402
from tests.kubernetes.harness import OperatorProcess, wait_for  # noqa: E402

CR = "substratus.ai/v1"
IDLE_GOAL = 0.02       # of one core
SETTLE = 30.0          # seconds after the last status before the idle CPU is measured (kopf's event backlog)
CREATORS = 8           # clients creating the objects side by side
POLL = 1.0             # seconds between lists of the objects while waiting for their statuses


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reason(obj: dict[str, Any]) -> str:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((str(c.get("reason", "")) for c in conditions if c.get("type") == "Ready"), "")


def operator_at_rest(n: int, windows: tuple[float, ...] = (20.0,), settle: float = SETTLE) -> dict[str, float]:
    """Figures for `n` suspended Notebooks (see the module docstring); the idle CPU over each of `windows`
    (seconds, all starting `settle` seconds after the last status)."""
    with Cluster() as cluster, tempfile.TemporaryDirectory(prefix="op-bench-") as tmp:
        api = KubeApi.connect(cluster.kubeconfig)
        for c in crd.crds():
            api.apply(c)
        settings = Path(tmp) / "settings.yaml"
        settings.write_text("artifactStore: pvc://substratus-artifacts\n")  # notebooks never touch it
        op = OperatorProcess("--kubeconfig", cluster.kubeconfig, "--settings-file", str(settings))
        try:
            wait_for("the operator to watch", lambda: op.saw("watching datasets"), timeout=120)
            time.sleep(1.0)  # its watch streams open
            pid = op.proc.pid
            cpu_before = cpu_seconds(pid)
            first = time.monotonic()
            with ThreadPoolExecutor(CREATORS) as pool:  # as many clients would: the emulator answers one at a time
                list(pool.map(lambda i: api.create({
                    "apiVersion": CR, "kind": "Notebook", "metadata": {"name": f"nb-{i}", "namespace": "default"},
                    "spec": {"modelName": "base", "suspend": True}}), range(n)))
            last_create = time.monotonic()

            def all_reported() -> bool:
                return sum(reason(o) == "Suspended" for o in api.list(CR, "Notebook", "default")) == n
            wait_for(f"{n} notebooks to report Suspended", all_reported, timeout=1800, every=POLL)
            done = time.monotonic()
            figures = {"first_to_last": done - first, "last_create_to_last": done - last_create,
                       "create": last_create - first, "cpu_per_object": (cpu_seconds(pid) - cpu_before) / n}
            time.sleep(settle)
            before, started = cpu_seconds(pid), time.monotonic()
            for window in sorted(windows):
                time.sleep(max(0.0, started + window - time.monotonic()))
                figures[f"idle_cpu_{window:g}"] = (cpu_seconds(pid) - before) / (time.monotonic() - started)
            figures.update(rss_mb=memory_mb(pid, "VmRSS"), peak_mb=memory_mb(pid, "VmHWM"))
        finally:
            code = op.stop(timeout=60)
            if code != 0:
                print("\n".join(op.lines[-40:]), file=sys.stderr)
    return figures


def describe(n: int, f: dict[str, float]) -> str:
    idle = sorted((float(k.rsplit("_", 1)[1]), v) for k, v in f.items() if k.startswith("idle_cpu_"))
    cpu = "; ".join(f"idle CPU over {w:g}s {100 * v:.2f}% of a core (goal < {100 * IDLE_GOAL:.0f}%: "
                    f"{'met' if v < IDLE_GOAL else 'NOT met'})" for w, v in idle)
    return (f"operator, {n} suspended notebooks on the emulated API server: created in {f['create']:.1f}s; "
            f"last status {f['last_create_to_last']:.1f}s after the last create ({f['first_to_last']:.1f}s after "
            f"the first); {cpu}; memory {f['rss_mb']:.0f} MB (peak {f['peak_mb']:.0f} MB); operator CPU until "
            f"the last status {1000 * f['cpu_per_object']:.1f} ms an object")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, nargs="+", default=[1000])
    ap.add_argument("--idle", type=float, nargs="+", default=[20.0],
                    help="seconds the idle CPU is measured over (several: windows from the same start)")
    ap.add_argument("--settle", type=float, default=SETTLE, help="seconds after the last status before measuring")
    args = ap.parse_args()
    for n in args.objects:
        print(describe(n, operator_at_rest(n, tuple(args.idle), args.settle)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
