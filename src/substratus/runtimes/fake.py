"""An in-memory Runtime for unit tests: no engine, no waiting.

Images come into being when built (their WORKDIR is read from the Dockerfile
so contract checks can pass or fail); containers run until a test ends them
with `exit()`, except `sh -c "exit N"`, which ends at once with N. `run_once`
answers from `once`, a function a test can replace. Every call is recorded in
`calls` so tests can assert what happened.

Errors are the engine runtime's types: running a second container of one name
raises NameInUse, as podman and docker do; `fail(verb, err)` makes the next
call of a verb raise any classified error (PortInUse, ImageMissing, a
permanent CommandError...), so unit tests meet each one the real runtimes
raise.

`exec` is the one verb that runs something real: the argv runs on the host
with a scratch directory (`filesystem(name)`) standing for the container's
filesystem and `workdir` inside it, so the file-sync transport's find, stat
and tar are really executed in unit tests. Only relative paths stay inside
that scratch directory; callers of `exec` use relative paths for that reason.
"""

from __future__ import annotations

import asyncio
import queue
import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from substratus.errors import BuildError, EngineError, NameInUse
from substratus.runtimes.base import (
    BuildSpec,
    Completed,
    ContainerState,
    EngineEvent,
    ExecResult,
    ImageInfo,
    LogSink,
    RunSpec,
)


@dataclass
class FakeContainer:
    spec: RunSpec
    state: ContainerState
    output: list[str] = field(default_factory=list)
    root: Optional[Path] = None  # scratch directory standing for its filesystem (made by the first exec)


def _default_once(spec: RunSpec) -> Completed:
    return Completed(exit_code=0, output="")


class FakeEvents:
    """An event stream a test (or the fake itself) feeds; `close()` ends the iteration."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self._queue: "queue.Queue[Optional[EngineEvent]]" = queue.Queue()

    def emit(self, event: EngineEvent) -> None:
        if event.type == "image" or all(event.labels.get(k) == v for k, v in self.labels.items()):
            self._queue.put(event)

    def __iter__(self) -> Iterator[EngineEvent]:
        while True:
            event = self._queue.get()
            if event is None:
                return
            yield event

    def close(self) -> None:
        self._queue.put(None)

    def pending(self) -> list[EngineEvent]:
        """What has been emitted and not read yet, without blocking (tests pump events by hand)."""
        out: list[EngineEvent] = []
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                return out
            if event is not None:
                out.append(event)


class FakeRuntime:
    engine = "fake"

    def __init__(self) -> None:
        self.image_store: dict[str, ImageInfo] = {}
        self.items: dict[str, FakeContainer] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_builds: set[str] = set()
        self.once: Callable[[RunSpec], Completed] = _default_once
        self.gpu = False
        self._seq = 0
        self.followers = 0  # stream_logs iterators open right now (a test checks they close)
        # What a started container prints at once (the fake runs no command); a test may replace it.
        self.prints: Callable[[RunSpec], list[str]] = lambda spec: []
        self.streams: list[FakeEvents] = []
        self.failures: list[tuple[str, Optional[str], Exception]] = []  # see `fail`

    def fail(self, verb: str, err: Exception, name: Optional[str] = None) -> None:
        """Test hook: the next call of `verb` ("run", "run_once", "build"), for container or tag `name`
        when given, raises `err` (once)."""
        self.failures.append((verb, name, err))

    def _failure(self, verb: str, name: str) -> None:
        for i, (v, n, err) in enumerate(self.failures):
            if v == verb and n in (None, name):
                del self.failures[i]
                raise err

    def _emit(self, type_: str, action: str, name: str, labels: Optional[dict[str, str]] = None,
              exit_code: Optional[int] = None) -> None:
        for stream in list(self.streams):
            stream.emit(EngineEvent(type=type_, action=action, name=name, labels=dict(labels or {}),
                                    exit_code=exit_code))

    # -- images ------------------------------------------------------------------------
    def build(self, spec: BuildSpec, log: LogSink) -> Optional[str]:
        self.calls.append(("build", spec.tag))
        self._failure("build", spec.tag)
        log(f"STEP 1/1: building {spec.tag}")
        if spec.tag in self.fail_builds:
            log("error: the test asked this build to fail")
            raise BuildError("image build failed (exit 1)", log_tail="error: the test asked this build to fail")
        dockerfile = spec.dockerfile or spec.context / "Dockerfile"
        workdir = ""
        if dockerfile.exists():
            for m in re.finditer(r"^\s*WORKDIR\s+(\S+)", dockerfile.read_text(), re.M):
                workdir = m.group(1)
        self._seq += 1
        self.image_store[spec.tag] = ImageInfo(ref=spec.tag, id=f"{self._seq:064d}", workdir=workdir,
                                          env={"PATH": "/usr/local/bin:/usr/bin:/bin"}, labels=dict(spec.labels),
                                          entrypoint=[], cmd=[])
        self._emit("image", "build", spec.tag)
        return self.image_store[spec.tag].id

    def image_info(self, ref: str) -> Optional[ImageInfo]:
        return self.image_store.get(ref)

    def remove_image(self, ref: str) -> bool:
        gone = self.image_store.pop(ref, None) is not None
        if gone:
            self._emit("image", "remove", ref)
        return gone

    def images(self) -> dict[str, str]:
        return {tag: info.id for tag, info in self.image_store.items()}

    # -- containers --------------------------------------------------------------------
    def run(self, spec: RunSpec) -> ContainerState:
        self.calls.append(("run", spec.name))
        self._failure("run", spec.name)
        if spec.name in self.items:
            raise NameInUse(f"a container named {spec.name} exists already")
        self._seq += 1
        state = ContainerState(name=spec.name, id=f"c{self._seq}", image=spec.image, labels=dict(spec.labels),
                               running=True, exit_code=None, status="running", ports=dict(spec.ports))
        self.items[spec.name] = FakeContainer(spec=spec, state=state, output=list(self.prints(spec)))
        self._emit("container", "start", spec.name, spec.labels)
        exit_now = re.fullmatch(r"exit ([0-9]{1,3})", " ".join(spec.command[2:])) \
            if spec.command[:2] == ["sh", "-c"] else None
        if exit_now:  # the one command the fake carries out: `sh -c "exit N"` ends at once with N
            self.exit(spec.name, int(exit_now.group(1)))
        return replace(state, labels=dict(state.labels))

    def run_once(self, spec: RunSpec, timeout: float) -> Completed:
        self.calls.append(("run_once", " ".join(spec.command)))
        self._failure("run_once", spec.name)
        return self.once(spec)

    def exit(self, name: str, code: int, output: str = "") -> None:
        """Test hook: the container's process ends with `code`."""
        c = self.items[name]
        c.output.extend(output.splitlines())
        c.state.running, c.state.exit_code, c.state.status = False, code, "exited"
        self._emit("container", "died", name, c.state.labels, exit_code=code)

    def container(self, name: str) -> Optional[ContainerState]:
        c = self.items.get(name)
        return replace(c.state, labels=dict(c.state.labels)) if c else None  # a copy, as an engine answers

    def containers(self, labels: dict[str, str]) -> list[ContainerState]:
        return [replace(c.state, labels=dict(c.state.labels)) for c in self.items.values()
                if all(c.state.labels.get(k) == v for k, v in labels.items())]

    def logs(self, name: str, *, tail: Optional[int] = None, follow: bool = False) -> Iterator[str]:
        lines = self.items[name].output if name in self.items else []
        yield from (lines[-tail:] if tail else lines)

    async def stream_logs(self, name: str, *, tail: Optional[int] = None, follow: bool = False) -> AsyncGenerator[str, None]:
        """Like `podman logs [-f]`: with `follow`, waits for new output until the container ends."""
        self.followers += 1
        try:
            c = self.items.get(name)
            lines = c.output if c else []
            sent = max(0, len(lines) - tail) if tail else 0
            while True:
                while sent < len(lines):
                    sent += 1
                    yield lines[sent - 1]
                if not (follow and c is not None and c.state.running and self.items.get(name) is c):
                    return
                await asyncio.sleep(0.02)
        finally:
            self.followers -= 1

    def say(self, name: str, line: str) -> None:
        """Test hook: the running container prints a line."""
        self.items[name].output.append(line)

    def stop(self, name: str, timeout: int = 10) -> bool:
        c = self.items.get(name)
        if c is None:
            return False
        c.state.running, c.state.exit_code, c.state.status = False, 137, "exited"
        self._emit("container", "died", name, c.state.labels, exit_code=137)
        return True

    def remove(self, name: str) -> bool:
        self.calls.append(("remove", name))
        c = self.items.pop(name, None)
        if c is not None:
            if c.root is not None:
                shutil.rmtree(c.root, ignore_errors=True)
            self._emit("container", "remove", name, c.state.labels)
        return c is not None

    def filesystem(self, name: str) -> Path:
        """Test hook: the scratch directory standing for a container's filesystem root."""
        c = self.items[name]
        if c.root is None:
            c.root = Path(tempfile.mkdtemp(prefix="fake-container-"))
        return c.root

    def exec(self, name: str, argv: list[str], *, stdin: Optional[bytes] = None, workdir: Optional[str] = None,
             timeout: float = 60) -> ExecResult:
        self.calls.append(("exec", " ".join(argv)))
        c = self.items.get(name)
        if c is None or not c.state.running:
            raise EngineError(f"cannot run a command in container {name}: it is not running")
        cwd = self.filesystem(name) / (workdir or c.spec.workdir or "/").lstrip("/")
        cwd.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.run(argv, input=stdin or b"", capture_output=True, timeout=timeout, cwd=cwd)
        except FileNotFoundError:
            return ExecResult(exit_code=127, stdout=b"", stderr=f"{argv[0]}: not found")
        except subprocess.TimeoutExpired as err:
            raise EngineError(f"exec in {name} did not finish in {timeout:.0f}s") from err
        return ExecResult(exit_code=proc.returncode, stdout=proc.stdout, stderr=proc.stderr.decode(errors="replace"))

    def background(self) -> "FakeRuntime":
        return self  # no engine processes of its own to lower the priority of

    def gpu_available(self) -> bool:
        return self.gpu

    def events(self, labels: dict[str, str]) -> FakeEvents:
        stream = FakeEvents(labels)
        self.streams.append(stream)
        return stream
