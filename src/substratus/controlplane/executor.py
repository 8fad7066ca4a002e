"""Carries out the actions planners ask for, through a Runtime.

Quick actions (start/remove a container) run inline in the reconcile pass;
slow ones (image builds, judging a finished job) run on a small thread pool,
and report back by patching the object's memo (`MemoPatcher`) and waking the
reconciler. An action already in flight is never started twice.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from substratus.build.contract import check_image
from substratus.build.trained import trained_dockerfile
from substratus.controlplane.actions import (
    SLOW_ACTIONS,
    Action,
    BuildTrained,
    CollectJob,
    EnsureImage,
    RemoveContainer,
    StartContainer,
)
from substratus.errors import SubstratusError, tail
from substratus.runtimes.base import BuildSpec, Runtime

log = logging.getLogger("substratus.executor")
MemoPatcher = Callable[[dict[str, Any]], None]  # applies a patch to the object's memo
TRAINED_DOCKERFILE = "Dockerfile.substratus"


def failure_patch(key: str, reason: str, message: str) -> dict[str, Any]:
    return {"failed": {key: {"reason": reason, "message": message}}}


class Executor:
    def __init__(self, runtime: Runtime, *, workers: int = 2, on_done: Callable[[], None] = lambda: None) -> None:
        self.runtime = runtime
        # workers=0 runs slow actions inline: deterministic, for tests.
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="substratus-action") if workers else None
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._on_done = on_done

    def in_flight(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._in_flight)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def submit(self, action: Action, patch: MemoPatcher) -> str:
        """Run or schedule one action. Returns what happened, for logs and tests."""
        if isinstance(action, SLOW_ACTIONS):
            with self._lock:
                if action.key in self._in_flight:
                    return "in-flight"
                self._in_flight.add(action.key)
            if self._pool is None:
                self._run_slow(action, patch)
            else:
                self._pool.submit(self._run_slow, action, patch)
            return "scheduled"
        try:
            self._run_quick(action)
        except SubstratusError as err:
            log.warning("%s failed: %s", action.key, err)
            if isinstance(action, StartContainer) and action.failure_key:
                patch(failure_patch(action.failure_key, action.failure_reason,
                                    f"the engine could not start {action.spec.name}: {err}"))
            return "failed"
        return "done"

    def _run_quick(self, action: Action) -> None:
        if isinstance(action, StartContainer):
            for m in action.spec.mounts:
                if not m.read_only:
                    Path(m.source).mkdir(parents=True, exist_ok=True)
            log.info("starting %s (%s)", action.spec.name, action.reason)
            self.runtime.run(action.spec)
        elif isinstance(action, RemoveContainer):
            log.info("removing %s (%s)", action.name, action.reason)
            if action.save_log_to is not None:
                save_logs(self.runtime, action.name, action.save_log_to)
            self.runtime.remove(action.name)

    def _run_slow(self, action: Action, patch: MemoPatcher) -> None:
        try:
            if isinstance(action, EnsureImage):
                patch(self.ensure_image(action))
            elif isinstance(action, BuildTrained):
                patch(self.build_trained(action))
            elif isinstance(action, CollectJob):
                patch(self.collect_job(action))
        except Exception as err:  # noqa: BLE001 - report any crash as the action's failure
            log.exception("%s crashed", action.key)
            patch(failure_patch(action.key if not isinstance(action, CollectJob) else action.failure_key,
                                "BuildFailed" if not isinstance(action, CollectJob) else
                                ("LoadFailed" if action.step == "load" else "TrainFailed"), f"internal error: {err}"))
        finally:
            with self._lock:
                self._in_flight.discard(action.key)
            self._on_done()

    # -- slow actions ----------------------------------------------------------------------
    def ensure_image(self, a: EnsureImage) -> dict[str, Any]:
        if self.runtime.image_info(a.tag) is None:
            err = build_with_log(self.runtime, BuildSpec(context=a.context, tag=a.tag, labels=a.labels), a.log_path)
            if err is not None:
                return failure_patch(a.key, "BuildFailed", err)
        problems = [r for r in check_image(self.runtime, a.tag, a.kind) if not r.ok]
        if problems:
            text = "; ".join(f"{r.clause}: {r.evidence}" for r in problems)
            return failure_patch(a.key, "ContractViolation", f"image {a.tag} breaks the {a.kind} contract: {text}")
        return {"verified+": a.tag}

    def build_trained(self, a: BuildTrained) -> dict[str, Any]:
        dockerfile = a.run_dir / TRAINED_DOCKERFILE
        dockerfile.write_text(trained_dockerfile(a.base))
        spec = BuildSpec(context=a.run_dir, tag=a.tag, dockerfile=dockerfile, labels=a.labels)
        err = build_with_log(self.runtime, spec, a.run_dir / "build.log", ignore=("logs", "job.log"))
        if err is not None:
            return failure_patch(a.key, "BuildFailed", err)
        return {}

    def collect_job(self, a: CollectJob) -> dict[str, Any]:
        job_log = a.run_dir / "job.log"
        save_logs(self.runtime, a.name, job_log)
        self.runtime.remove(a.name)
        last = tail(job_log.read_text(errors="replace") if job_log.exists() else "", 15)
        script = f"{a.step}.sh"
        reason = "LoadFailed" if a.step == "load" else "TrainFailed"
        if a.exit_code != 0:
            return failure_patch(a.failure_key, reason,
                                 f"{script} exited with code {a.exit_code}; last log lines:\n{last}")
        if a.step == "load" and not (a.expect.is_file() and a.expect.stat().st_size > 0):
            return failure_patch(a.failure_key, reason,
                                 f"{script} exited 0 but wrote nothing at LOAD_DATA_PATH (/data/{a.expect.name}); "
                                 f"the contract says load.sh saves the data at exactly that path. Last log lines:\n{last}")
        if a.step == "train" and not (a.expect.is_dir() and any(a.expect.iterdir())):
            return failure_patch(a.failure_key, reason,
                                 f"{script} exited 0 but left /model/trained empty; the contract says train.sh "
                                 f"saves the trained model there. Last log lines:\n{last}")
        (a.run_dir / ".succeeded").write_text("ok\n")
        return {}


def build_with_log(runtime: Runtime, spec: BuildSpec, log_path: Path | None,
                   ignore: tuple[str, ...] = ()) -> str | None:
    """Build, writing the log to `log_path`; returns an error message, or None on success."""
    if ignore:
        (spec.context / ".dockerignore").write_text("\n".join(ignore) + "\n")
    fh = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fh = log_path.open("w", encoding="utf-8")

    def write(line: str) -> None:
        if fh is not None:
            fh.write(line + "\n")
            fh.flush()

    try:
        runtime.build(spec, write)
    except SubstratusError as err:
        tail_text = getattr(err, "log_tail", "") or ""
        return f"{err.message} while building {spec.tag}; last build log lines:\n{tail(tail_text, 15)}"
    finally:
        if fh:
            fh.close()
    return None


def save_logs(runtime: Runtime, name: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("a", encoding="utf-8") as fh:
            for line in runtime.logs(name):
                fh.write(line + "\n")
    except SubstratusError as err:
        log.warning("could not save logs of %s: %s", name, err)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
