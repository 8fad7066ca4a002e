"""Checks an image against the static clauses of the container contract.

Used after every build by the control plane (a miss becomes a failed
condition naming the clause) and by `sub verify`.
"""

from __future__ import annotations

from dataclasses import dataclass

from substratus.runtimes.base import Runtime, RunSpec

WORKDIRS = {"Model": "/model", "Dataset": "/dataset"}
SCRIPTS = {"Model": ("serve.sh", "train.sh", "notebook.sh"), "Dataset": ("load.sh", "notebook.sh")}


@dataclass
class ClauseResult:
    clause: str
    ok: bool
    evidence: str


def check_workdir(runtime: Runtime, image: str, kind: str) -> ClauseResult:
    want = WORKDIRS[kind]
    info = runtime.image_info(image)
    got = info.workdir if info else "(image not found)"
    ok = (got or "").rstrip("/") == want
    evidence = f"image WORKDIR is {got or '(unset, i.e. /)'!r}"
    if not ok:
        evidence += f"; the contract needs `WORKDIR {want}` in the Dockerfile"
    return ClauseResult(f"working directory is {want}", ok, evidence)


def check_scripts(runtime: Runtime, image: str, kind: str, timeout: float = 120) -> list[ClauseResult]:
    scripts = SCRIPTS[kind]
    probe = "; ".join(
        f'p=$(command -v {s}) && [ -x "$p" ] && echo "found {s} $p" || echo "missing {s}"' for s in scripts
    )
    done = runtime.run_once(RunSpec(name="", image=image, entrypoint=["sh", "-c"], command=[probe]),
                            timeout=timeout)
    found = {}
    for line in done.output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("found", "missing"):
            found[parts[1]] = parts[2] if parts[0] == "found" and len(parts) > 2 else None
    results = []
    for s in scripts:
        if s in found and found[s]:
            results.append(ClauseResult(f"{s} is on PATH and executable", True, f"command -v {s} -> {found[s]}"))
        elif done.exit_code != 0 and not found:
            results.append(ClauseResult(f"{s} is on PATH and executable", False,
                                        f"could not run `sh -c` in the image (exit {done.exit_code}): "
                                        f"{done.output.strip()[-300:]}; contract scripts need a shell"))
        else:
            results.append(ClauseResult(f"{s} is on PATH and executable", False,
                                        f"`command -v {s}` found nothing executable; put {s} in a directory on "
                                        f"PATH (e.g. COPY {s} /usr/local/bin/ and chmod +x)"))
    return results


def check_image(runtime: Runtime, image: str, kind: str) -> list[ClauseResult]:
    return [check_workdir(runtime, image, kind), *check_scripts(runtime, image, kind)]
