"""The container contract's facts in one place, and the static checks on an image.

Ports, the load/train environment, the mount points and the readiness rule
are used by the planners (what the control plane runs), by the Kubernetes
generators and by `sub verify` (what it checks), so all three mean the same
thing. `check_image` runs after every build in the control plane (a miss
becomes a failed condition naming the clause) and in `sub verify`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Optional

from substratus.runtimes.base import Completed, Mount, RunSpec, Runtime

WORKDIRS = {"Model": "/model", "Dataset": "/dataset"}
SCRIPTS = {"Model": ("serve.sh", "train.sh", "notebook.sh"), "Dataset": ("load.sh", "notebook.sh")}

SERVER_PORT = 8080
NOTEBOOK_PORT = 8888
DATA_DIR = "/data"                      # LOAD_DATA_PATH / TRAIN_DATA_PATH live here
SAVED_DIR = "/model/saved"
TRAINED_DIR = "/model/trained"
MODEL_LOGS = "/model/logs"
DATASET_LOGS = "/dataset/logs"
READY_PATH = "/docs"                    # the contract's GET /docs answers 200 once serving
READYZ_PATH = "/readyz"                 # beyond the contract: a server that offers it must answer 200 too
NOTEBOOK_PATH = "/"                     # a notebook is up once anything answers below 500
# Which jobs get a network. A loader usually downloads its data: it gets one (its own stack where the
# engine can, runtimes.engine.own_network_mode). A trainer reads the mounted data and /model/saved:
# it gets none, so it can reach no server, notebook or anything else (docs/security.md).
LOAD_NETWORK = True
TRAIN_NETWORK = False


def load_env(filename: str) -> dict[str, str]:
    return {"LOAD_DATA_PATH": f"{DATA_DIR}/{filename}"}


def train_env(filename: str, params: dict[str, Any]) -> dict[str, str]:
    """The contract's TRAIN_* variables (and DATASET_PATH, which the contract's text also names)."""
    path = f"{DATA_DIR}/{filename}"
    return {"TRAIN_DATA_PATH": path, "DATASET_PATH": path, "TRAIN_DATA_LIMIT": str(params["dataLimit"]),
            "TRAIN_BATCH_SIZE": str(params["batchSize"]), "TRAIN_EPOCHS": str(params["epochs"])}


def load_mounts(data_dir: str, logs_dir: str) -> list[Mount]:
    return [Mount(data_dir, DATA_DIR), Mount(logs_dir, DATASET_LOGS)]


def train_mounts(data_dir: str, trained_dir: str, logs_dir: str) -> list[Mount]:
    return [Mount(data_dir, DATA_DIR, read_only=True), Mount(trained_dir, TRAINED_DIR), Mount(logs_dir, MODEL_LOGS)]


def server_ready(docs_status: int | None, readyz_status: int | None) -> bool:
    """The readiness rule: /docs answers 200, and /readyz answers 200 where the server has one
    (404/405: it has none). No answer at all is not ready."""
    return docs_status == 200 and readyz_status in (200, 404, 405)


def notebook_ready(status: int) -> bool:
    return status < 500


def free_port() -> int:
    """A host port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ClauseResult:
    clause: str
    ok: bool
    evidence: str


def check_workdir(runtime: Runtime, image: str, kind: str) -> ClauseResult:
    info = runtime.image_info(image)
    return workdir_result(info.workdir if info else None, kind)


def workdir_result(got: Optional[str], kind: str) -> ClauseResult:
    """The WORKDIR clause for what the image says (None: the image was not found)."""
    want = WORKDIRS[kind]
    shown = "(image not found)" if got is None else got
    ok = (got or "").rstrip("/") == want
    evidence = f"image WORKDIR is {shown or '(unset, i.e. /)'!r}"
    if not ok:
        evidence += f"; the contract needs `WORKDIR {want}` in the Dockerfile"
    return ClauseResult(f"working directory is {want}", ok, evidence)


def _probe(runtime: Runtime, image: str, kind: str, timeout: float) -> tuple[Completed, dict[str, Optional[str]],
                                                                              Optional[str]]:
    """One container: where each script is (None: missing) and the directory it starts in (the
    image's WORKDIR; None when the probe could not say)."""
    probe = "; ".join(
        f'p=$(command -v {s}) && [ -x "$p" ] && echo "found {s} $p" || echo "missing {s}"' for s in SCRIPTS[kind]
    ) + '; echo "workdir $(pwd)"'
    done = runtime.run_once(RunSpec(name="", image=image, entrypoint=["sh", "-c"], command=[probe], network=False),
                            timeout=timeout)
    found: dict[str, Optional[str]] = {}
    workdir = None
    for line in done.output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("found", "missing"):
            found[parts[1]] = parts[2] if parts[0] == "found" and len(parts) > 2 else None
        elif line.startswith("workdir /"):
            workdir = "" if line == "workdir /" else line.removeprefix("workdir ")
    return done, found, workdir


def check_scripts(runtime: Runtime, image: str, kind: str, timeout: float = 120) -> list[ClauseResult]:
    done, found, _ = _probe(runtime, image, kind, timeout)
    return _script_results(done, found, kind)


def _script_results(done: Completed, found: dict[str, Optional[str]], kind: str) -> list[ClauseResult]:
    results = []
    for s in SCRIPTS[kind]:
        if found.get(s):
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
    """Both static clauses from one probe container: the directory a container starts in is the
    image's WORKDIR (`/` when it has none), so no inspect of the image is needed unless the probe
    could not run."""
    done, found, workdir = _probe(runtime, image, kind, 120)
    where = workdir_result(workdir, kind) if workdir is not None else check_workdir(runtime, image, kind)
    return [where, *_script_results(done, found, kind)]
