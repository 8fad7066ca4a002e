"""The one narrow interface to a container engine.

Everything above this layer (build, controlplane, verify) talks to a
`Runtime`; `runtimes.engine` implements it with the podman or docker CLI and
`runtimes.fake` in memory for unit tests. The same contract tests
(tests/runtime_contract.py) run against both. Runtimes never import each other.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Protocol

from substratus.resources.limits import RunLimits

LABEL_PREFIX = "substratus.ai/"
MANAGED = LABEL_PREFIX + "managed"


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False


@dataclass
class BuildSpec:
    context: Path
    tag: str
    dockerfile: Optional[Path] = None
    labels: dict[str, str] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)
    # False: nothing is gained by keeping each instruction's layer for later builds (an image made
    # once, like a trained model's): podman then commits once, at the end.
    layer_cache: bool = True


@dataclass
class RunSpec:
    name: str
    image: str
    command: list[str] = field(default_factory=list)
    entrypoint: Optional[list[str]] = None
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    ports: dict[int, int] = field(default_factory=dict)  # container port -> host port on `publish_address`
    labels: dict[str, str] = field(default_factory=dict)
    gpu: bool = False
    workdir: Optional[str] = None
    # Secrets reach the container as `-e NAME` with the value in the engine process's own
    # environment, never on its argv (readable by anyone in /proc/*/cmdline). Not in repr.
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)
    publish_address: str = "127.0.0.1"
    limits: RunLimits = field(default_factory=RunLimits)  # from spec.resources.limits
    network: bool = True  # False: no network at all (probes that only look inside the image)


@dataclass
class ContainerState:
    name: str
    id: str
    image: str
    labels: dict[str, str]
    running: bool
    exit_code: Optional[int]
    status: str  # engine words: created, running, exited...
    ports: dict[int, int] = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""


def free_port() -> int:
    """A host port on 127.0.0.1 that nothing listens on right now (for `RunSpec.ports`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def normalise_id(image_id: str) -> str:
    """An image id as every runtime reports it: the hex digest, without `sha256:`."""
    return image_id.removeprefix("sha256:")


@dataclass
class ImageInfo:
    ref: str
    id: str
    workdir: str
    env: dict[str, str]
    labels: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    onbuild: list[str] = field(default_factory=list)  # ONBUILD triggers: they run in any build FROM this image


@dataclass
class Completed:
    exit_code: int
    output: str  # stdout and stderr, interleaved
    timed_out: bool = False  # stopped after its timeout (exit_code is then 124, as `timeout(1)` says)


@dataclass
class ExecResult:
    """What a command run inside a container gave back; stdout stays bytes (file contents travel in it)."""

    exit_code: int
    stdout: bytes
    stderr: str


LogSink = Callable[[str], None]


@dataclass(frozen=True)
class EngineEvent:
    """Something happened in the engine: a container started, died or was removed; an image changed."""

    type: str                      # "container" or "image"
    action: str                    # engine words: create, start, died, remove, tag, untag, build...
    name: str                      # container name, or image reference
    id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    exit_code: Optional[int] = None  # a container's "died" event: how its process ended, when the engine says
    image: str = ""                  # a container's image, as the engine names it in the event


class EventStream(Protocol):
    """A blocking stream of engine events; `close()` (from any thread) ends the iteration."""

    def __iter__(self) -> Iterator[EngineEvent]: ...

    def close(self) -> None: ...


class Runtime(Protocol):
    """What the rest of the system may ask of a container engine."""

    engine: str

    def build(self, spec: BuildSpec, log: LogSink) -> Optional[str]:
        """Build an image; stream each log line to `log`. Returns the new image's id when the engine
        said it (None: ask `image_info`). Raises BuildError."""

    def image_info(self, ref: str) -> Optional[ImageInfo]:
        """The image's config, or None when it does not exist."""

    def images(self) -> dict[str, str]:
        """Every local image reference (repository:tag) and its image id."""

    def remove_image(self, ref: str) -> bool:
        """Remove an image; False when it did not exist."""

    def run(self, spec: RunSpec) -> ContainerState:
        """Create and start a detached container. Raises NameInUse, PortInUse, ImageMissing (or, on a
        cluster, AlreadyExists) when that is why it could not, else another EngineError."""

    def run_once(self, spec: RunSpec, timeout: float) -> Completed:
        """Run to completion (removed afterwards) and return exit code and output (`timed_out` after
        `timeout`). Raises an EngineError when the engine could not run it at all (ImageMissing...)."""

    def container(self, name: str) -> Optional[ContainerState]:
        """One container by name, or None."""

    def containers(self, labels: dict[str, str]) -> list[ContainerState]:
        """All containers (running or not) carrying all of `labels`."""

    def logs(self, name: str, *, tail: Optional[int] = None, follow: bool = False) -> Iterator[str]:
        """The container's stdout/stderr, line by line (bounded in time unless `follow`)."""

    def stream_logs(self, name: str, *, tail: Optional[int] = None, follow: bool = False) -> AsyncGenerator[str, None]:
        """The same, for an event loop: waiting for the next line holds no thread, and closing
        the iterator (the HTTP client went away) ends the engine's `logs` process at once."""

    def stop(self, name: str, timeout: int = 10) -> bool:
        """Stop a running container; False when there was none."""

    def remove(self, name: str) -> bool:
        """Remove a container (stopping it first); False when there was none."""

    def exec(self, name: str, argv: list[str], *, stdin: Optional[bytes] = None, workdir: Optional[str] = None,
             timeout: float = 60) -> ExecResult:
        """Run argv inside the running container `name` (as its image's user, in `workdir`), feeding `stdin`.
        The command's own failure is an exit code in the result; raises EngineError when the container is
        missing or not running, or the command outlives `timeout`. `sub notebook` syncs files with it."""

    def gpu_available(self) -> bool:
        """Whether containers can be given a GPU."""

    def background(self) -> "Runtime":
        """This runtime for work nothing waits on right away (a contract probe beside the next build,
        a finished job's log copy and removal): where it can, its engine processes run at a low CPU
        priority, so the work on the critical path gets the CPUs."""

    def events(self, labels: dict[str, str]) -> EventStream:
        """Container events of containers carrying all of `labels`, and every image event, as they happen."""
