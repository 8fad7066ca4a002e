"""Figure 3: 50 `sub apply` processes at once, writing overlapping objects, leave a consistent
store: no 5xx, every apply answered, and each object's final generation and body are those
of its last write.

The objects are suspended Notebooks of one Model, so the test measures the control plane's
store and API, not the engine: each writer sets its own label on a random subset of them,
so every write changes the body and bumps the generation by exactly one.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import SUB, Sub, cleanup, copy_fixture

WRITERS = 50
NOTEBOOKS = [f"nb-{i}" for i in range(10)]
NS = "concurrent"


def notebook(name: str, writer: int) -> str:
    return (f"apiVersion: substratus.ai/v1\nkind: Notebook\nmetadata: {{name: {name}, namespace: {NS}, "
            f"labels: {{writer: w{writer}}}}}\nspec: {{modelName: base, suspend: true}}\n")


@pytest.fixture
def plane(tmp_path: Path, engine: str, busybox: Path) -> Iterator[Sub]:
    sub = Sub(tmp_path / "home")
    copy_fixture("model-shell", tmp_path / "model", busybox)
    (tmp_path / "base.yaml").write_text(f"apiVersion: substratus.ai/v1\nkind: Model\n"
                                        f"metadata: {{name: base, namespace: {NS}}}\nspec: {{source: {{dir: model}}}}\n")
    sub.ok("apply", "-f", str(tmp_path / "base.yaml"))
    yield sub
    cleanup(sub, engine)


@pytest.mark.timeout(900)
def test_fifty_concurrent_applies_leave_a_consistent_store(plane: Sub, tmp_path: Path,
                                                          figures: dict[str, Any]) -> None:
    rng = random.Random(7)
    wrote: dict[int, list[str]] = {}
    for w in range(WRITERS):
        wrote[w] = sorted(rng.sample(NOTEBOOKS, rng.randint(3, 6)))
        (tmp_path / f"w{w}.yaml").write_text("---\n".join(notebook(n, w) for n in wrote[w]))
    started = time.monotonic()
    procs = {w: subprocess.Popen([SUB, "apply", "-f", str(tmp_path / f"w{w}.yaml"), "-o", "json"], env=plane.env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
             for w in range(WRITERS)}
    outs = {w: p.communicate(timeout=600) for w, p in procs.items()}
    took = time.monotonic() - started
    failed = {w: err for w, (_, err) in outs.items() if procs[w].returncode != 0}
    assert not failed, f"{len(failed)} applies failed, e.g. {next(iter(failed.values()))}"
    log = (plane.home / "controlplane.log").read_text()
    assert "Traceback" not in log and "Internal Server Error" not in log

    generations: dict[str, list[tuple[int, int]]] = defaultdict(list)  # name -> [(generation, writer)]
    for w, (out, _) in outs.items():
        for r in json.loads(out):
            assert r["result"] in ("created", "configured"), r
            generations[r["name"]].append((r["generation"], w))
    items = json.loads(plane.ok("get", "notebooks", "-n", NS, "-o", "json"))["items"]
    stored = {o["metadata"]["name"]: o for o in items}
    assert set(stored) == set(generations), "the store holds exactly the objects written"
    for name, gens in generations.items():
        numbers = sorted(g for g, _ in gens)
        assert numbers == list(range(1, len(gens) + 1)), f"{name}: generations {numbers} skip or repeat"
        last_gen, last_writer = max(gens)
        assert stored[name]["metadata"]["generation"] == last_gen == len(gens)
        assert stored[name]["metadata"]["labels"] == {"writer": f"w{last_writer}"}, f"{name}: not the last write"
    writes = sum(len(v) for v in wrote.values())
    print(f"{WRITERS} concurrent applies ({writes} object writes) in {took:.1f}s")
    figures["concurrent_applies"] = {
        "processes": WRITERS, "writes": writes, "seconds": round(took, 1), "errors": 0,
        "summary": f"{WRITERS} processes, {writes} overlapping writes to {len(NOTEBOOKS)} objects: 0 errors, "
                   "0 5xx, every final generation and body is the object's last write"}
