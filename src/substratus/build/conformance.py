"""Checking an image against the contract's static clauses through a Runtime, and the
contract's mount points as a Runtime's mounts.

The facts come from `substratus.contract`; this module is where they meet a
runtime. `check_image` runs after every build in both backends' executors: a
broken clause becomes a ContractViolation naming the clause's id, title and fix
(`violation`), the same id `sub verify` prints for it. `sub verify` uses
`check_workdir` and `check_scripts` for its own checklist.

A probe that could not run (it timed out, the engine failed) says nothing about
the image: that is a temporary EngineError, retried, never a ContractViolation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from substratus import contract
from substratus.contract import Clause
from substratus.errors import EngineError
from substratus.runtimes.base import Completed, Mount, RunSpec, Runtime

PROBE_TIMEOUT = 120.0


def load_mounts(data_dir: str, logs_dir: str) -> list[Mount]:
    points = contract.LOAD_MOUNTS
    return [Mount(data_dir, points["data"].target, points["data"].read_only),
            Mount(logs_dir, points["logs"].target, points["logs"].read_only)]


def train_mounts(data_dir: str, trained_dir: str, logs_dir: str) -> list[Mount]:
    points = contract.TRAIN_MOUNTS
    return [Mount(source, points[what].target, points[what].read_only)
            for what, source in (("data", data_dir), ("trained", trained_dir), ("logs", logs_dir))]


@dataclass
class ClauseResult:
    clause: Clause
    ok: bool
    evidence: str


def violation(image: str, kind: str, broken: list[ClauseResult]) -> str:
    """The ContractViolation message: each broken clause by its id (as `sub verify` prints it), what
    was seen and the fix, then the command that checks every clause."""
    lines = [f"image {image} breaks the {kind} contract:"]
    for r in broken:
        lines.append(f"  [{r.clause.id}] {r.clause.title}: {r.evidence}")
        if r.clause.fix:
            lines.append(f"    fix: {r.clause.fix}")
    lines.append(f"  to check every clause: sub verify {kind.lower()} --image {image}")
    return "\n".join(lines)


def check_workdir(runtime: Runtime, image: str, kind: str) -> ClauseResult:
    info = runtime.image_info(image)
    return workdir_result(info.workdir if info else None, kind)


def workdir_result(got: Optional[str], kind: str) -> ClauseResult:
    """The WORKDIR clause for what the image says (None: the image was not found)."""
    want = contract.WORKDIRS[kind]
    shown = "(image not found)" if got is None else got
    ok = (got or "").rstrip("/") == want
    evidence = f"image WORKDIR is {shown or '(unset, i.e. /)'!r}"
    if not ok:
        evidence += f"; the contract needs `WORKDIR {want}` in the Dockerfile"
    return ClauseResult(contract.clause(kind, "workdir"), ok, evidence)


def _probe(runtime: Runtime, image: str, kind: str, timeout: float) -> tuple[Completed, dict[str, Optional[str]],
                                                                              Optional[str]]:
    """One container: where each script is (None: missing) and the directory it starts in (the
    image's WORKDIR; None when the probe could not say). Raises EngineError when the probe could
    not run to its end: then nothing is known about the image."""
    probe = "; ".join(
        f'p=$(command -v {s}) && [ -x "$p" ] && echo "found {s} $p" || echo "missing {s}"'
        for s in contract.SCRIPTS[kind]
    ) + '; echo "workdir $(pwd)"'
    done = runtime.run_once(RunSpec(name="", image=image, entrypoint=["sh", "-c"], command=[probe], network=False),
                            timeout=timeout)
    if done.timed_out:
        raise EngineError(f"the contract probe of {image} did not finish in {timeout:.0f}s",
                          hint="the engine may be overloaded; the check is tried again")
    found: dict[str, Optional[str]] = {}
    workdir = None
    for line in done.output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("found", "missing"):
            found[parts[1]] = parts[2] if parts[0] == "found" and len(parts) > 2 else None
        elif line.startswith("workdir /"):
            workdir = "" if line == "workdir /" else line.removeprefix("workdir ")
    return done, found, workdir


def check_scripts(runtime: Runtime, image: str, kind: str, timeout: float = PROBE_TIMEOUT) -> list[ClauseResult]:
    done, found, _ = _probe(runtime, image, kind, timeout)
    return _script_results(done, found, kind)


def _script_results(done: Completed, found: dict[str, Optional[str]], kind: str) -> list[ClauseResult]:
    results = []
    for s in contract.SCRIPTS[kind]:
        clause = contract.clause(kind, contract.SCRIPT_CLAUSES[s])
        if found.get(s):
            results.append(ClauseResult(clause, True, f"command -v {s} -> {found[s]}"))
        elif done.exit_code != 0 and not found:
            results.append(ClauseResult(clause, False,
                                        f"could not run `sh -c` in the image (exit {done.exit_code}): "
                                        f"{done.output.strip()[-300:]}; contract scripts need a shell"))
        else:
            results.append(ClauseResult(clause, False,
                                        f"`command -v {s}` found nothing executable; put {s} in a directory on "
                                        f"PATH (e.g. COPY {s} /usr/local/bin/ and chmod +x)"))
    return results


def check_image(runtime: Runtime, image: str, kind: str) -> list[ClauseResult]:
    """Both static clauses from one probe container: the directory a container starts in is the
    image's WORKDIR (`/` when it has none), so no inspect of the image is needed unless the probe
    could not run."""
    done, found, workdir = _probe(runtime, image, kind, PROBE_TIMEOUT)
    where = workdir_result(workdir, kind) if workdir is not None else check_workdir(runtime, image, kind)
    return [where, *_script_results(done, found, kind)]
