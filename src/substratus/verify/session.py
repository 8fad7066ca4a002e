"""Everything one `sub verify` run creates, and the guarantee that it goes away.

`TrackedRuntime` wraps a Runtime so that every container started through it,
also by shared code such as `build.conformance.check_scripts`, gets a name
before it exists and the labels `substratus.ai/managed=true`,
`substratus.ai/role=verify` and `substratus.ai/verify-run=<id>`.
`Session` owns that runtime plus temporary directories and images and
removes all of them on exit: normal return, failure, Ctrl-C or SIGTERM
(turned into KeyboardInterrupt), with further signals ignored while it
cleans up so a second Ctrl-C cannot leave half the containers behind.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import AsyncGenerator, Iterator
from dataclasses import replace
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Optional

from substratus.build.naming import label
from substratus.runtimes.base import (
    MANAGED,
    BuildSpec,
    Completed,
    ContainerState,
    EventStream,
    ExecResult,
    ImageInfo,
    LogSink,
    RunSpec,
    Runtime,
)

ROLE_LABEL = label("role")
RUN_LABEL = label("verify-run")


def verify_labels(run_id: str) -> dict[str, str]:
    return {MANAGED: "true", ROLE_LABEL: "verify", RUN_LABEL: run_id}


class TrackedRuntime:
    """A Runtime that names, labels and remembers every container it starts."""

    def __init__(self, inner: Runtime, run_id: str) -> None:
        self.inner = inner
        self.engine = inner.engine
        self.run_id = run_id
        self.labels = verify_labels(run_id)
        self.names: list[str] = []
        self._seq = 0

    def _own(self, spec: RunSpec, purpose: str) -> RunSpec:
        self._seq += 1
        name = spec.name or f"sub-verify-{self.run_id}-{purpose}-{self._seq}"
        self.names.append(name)  # before it exists: an interrupt during start still finds it
        return replace(spec, name=name, labels={**spec.labels, **self.labels})

    def run(self, spec: RunSpec) -> ContainerState:
        return self.inner.run(self._own(spec, "svc"))

    def run_once(self, spec: RunSpec, timeout: float) -> Completed:
        return self.inner.run_once(self._own(spec, "job"), timeout)

    # -- plain delegation ------------------------------------------------------------
    def build(self, spec: BuildSpec, log: LogSink) -> Optional[str]:
        return self.inner.build(spec, log)

    def image_info(self, ref: str) -> Optional[ImageInfo]:
        return self.inner.image_info(ref)

    def remove_image(self, ref: str) -> bool:
        return self.inner.remove_image(ref)

    def images(self) -> dict[str, str]:
        return self.inner.images()

    def events(self, labels: dict[str, str]) -> EventStream:
        return self.inner.events(labels)

    def container(self, name: str) -> Optional[ContainerState]:
        return self.inner.container(name)

    def containers(self, labels: dict[str, str]) -> list[ContainerState]:
        return self.inner.containers(labels)

    def logs(self, name: str, *, tail: Optional[int] = None, follow: bool = False) -> Iterator[str]:
        return self.inner.logs(name, tail=tail, follow=follow)

    def stream_logs(self, name: str, *, tail: Optional[int] = None, follow: bool = False) -> AsyncGenerator[str, None]:
        return self.inner.stream_logs(name, tail=tail, follow=follow)

    def stop(self, name: str, timeout: int = 10) -> bool:
        return self.inner.stop(name, timeout)

    def remove(self, name: str) -> bool:
        return self.inner.remove(name)

    def background(self) -> "TrackedRuntime":
        return self  # no engine processes of its own to lower the priority of

    def gpu_available(self) -> bool:
        return self.inner.gpu_available()

    def exec(self, name: str, argv: list[str], *, stdin: Optional[bytes] = None, workdir: Optional[str] = None,
             timeout: float = 60) -> ExecResult:
        return self.inner.exec(name, argv, stdin=stdin, workdir=workdir, timeout=timeout)


class _Terminated(KeyboardInterrupt):
    """SIGTERM/SIGHUP, raised like Ctrl-C so the same finally blocks clean up."""


def _raise_interrupt(signum: int, frame: Optional[FrameType]) -> None:
    raise _Terminated(f"signal {signum}")


class Session:
    """Owns the containers, images and temporary directories of one verify run."""

    def __init__(self, runtime: Runtime, *, run_id: Optional[str] = None) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.runtime = TrackedRuntime(runtime, self.run_id)
        self.images: list[str] = []
        self.temp_dirs: list[Path] = []
        self._saved_handlers: dict[signal.Signals, Any] = {}
        self.cleaned = False

    def temp_dir(self, purpose: str) -> Path:
        """A fresh directory, writable by any user a container runs as."""
        path = Path(tempfile.mkdtemp(prefix=f"sub-verify-{self.run_id}-{purpose}-"))
        self.temp_dirs.append(path)
        path.chmod(0o777)
        return path

    def forget_container(self, name: str) -> None:
        """Remove one container now (the others wait for the end of the run)."""
        self.runtime.inner.remove(name)

    def __enter__(self) -> "Session":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                self._saved_handlers[sig] = signal.signal(sig, _raise_interrupt)
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Remove everything this run created; safe to call twice."""
        if self.cleaned:
            return
        in_main = threading.current_thread() is threading.main_thread()
        blocked: dict[signal.Signals, Any] = {}
        if in_main:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                blocked[sig] = signal.signal(sig, signal.SIG_IGN)
        try:
            self._remove_everything()
            self.cleaned = True
        finally:
            if in_main:
                for sig, handler in blocked.items():
                    signal.signal(sig, handler)
                for sig, handler in self._saved_handlers.items():
                    signal.signal(sig, handler)

    def _remove_everything(self) -> None:
        inner = self.runtime.inner
        names = set(self.runtime.names)
        try:
            names |= {c.name for c in inner.containers({RUN_LABEL: self.run_id})}
        except Exception:  # noqa: BLE001 - cleanup goes on with what it knows
            pass
        for name in sorted(names):
            try:
                inner.remove(name)
            except Exception:  # noqa: BLE001
                pass
        for ref in self.images:
            try:
                inner.remove_image(ref)
            except Exception:  # noqa: BLE001
                pass
        for path in self.temp_dirs:
            shutil.rmtree(path, ignore_errors=True)
        # What is left was written by another uid in a rootless container; the CLI names it.
        self.temp_dirs = [p for p in self.temp_dirs if p.exists()]
