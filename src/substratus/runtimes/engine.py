"""The podman / docker runtime: drives the engine's CLI with argv lists.

podman and docker share every verb used here; the differences (GPU flags,
inspect field names) are handled in small helpers. Commands are argv lists, no
shell, with `--` before every name or path, and every call has a timeout
(builds: `build_timeout`, from SUBSTRATUS_BUILD_TIMEOUT). Every container runs
hardened (`HARDENING`): no new privileges, a pids limit, and only the
capabilities a contract script can need; its output is capped (`log_args`), its
memory bounded by default (`default_memory_limit`), and on podman a container
with a network gets a network stack of its own (`own_network_mode`), not the
shared bridge where any other container could reach its server.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any, Optional

from substratus.errors import BuildError, CommandError, EngineError, ImageMissing, NameInUse, PortInUse
from substratus.runtimes.base import (
    LABEL_PREFIX,
    MANAGED,
    BuildSpec,
    Completed,
    ContainerState,
    EngineEvent,
    ExecResult,
    ImageInfo,
    LogSink,
    RunSpec,
    normalise_id,
)
from substratus.runtimes.processes import MAX_LINE, Deadline, logs_argv, reap, split_lines

ENGINES = ("podman", "docker")
PIDS_LIMIT = 4096
# Kept from the engines' defaults: root in the container may still own, chmod and write the
# bind-mounted store directories (owned by whoever runs the control plane, so root needs
# DAC_OVERRIDE/FOWNER/CHOWN when that is not root), signal its own processes and switch to
# a non-root user. Dropped: NET_BIND_SERVICE (the contract's ports are above 1024), NET_RAW,
# MKNOD, SYS_CHROOT, SETFCAP, SETPCAP, FSETID, AUDIT_WRITE. Nothing is ever added.
KEPT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID")
# One --cap-add per capability: docker reads "A,B" as one (unknown) name, podman splits it.
HARDENING = ["--security-opt", "no-new-privileges", "--pids-limit", str(PIDS_LIMIT), "--cap-drop", "ALL",
             *[arg for cap in KEPT_CAPABILITIES for arg in ("--cap-add", cap)]]
DEFAULT_BUILD_TIMEOUT = 3600.0
LOG_MAX_SIZE = "16m"          # a container's output kept by the engine (podman k8s-file, docker json-file)
DEFAULT_MEMORY_SHARE = 0.75   # of this machine's memory: a container's limit when its spec sets none
LOGS_TIMEOUT = 120.0          # reading a finished container's output
ENGINE_FAILED = 125           # `run`'s exit code when the engine itself failed (podman and docker alike)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# What podman and docker say when `exec` cannot start (not the command's own failure).
EXEC_UNAVAILABLE = re.compile(r"no such container|not running|state improper|is paused|no container with name",
                              re.I)
# How the engines say why a command failed, read once here so nothing above matches their text.
# Seen on this project's machines (podman 4.3, and docker 28's CLI in front of podman's Docker API)
# and in Docker Engine's own messages (moby); tests/unit/runtimes/test_engine_errors.py holds each.
PORT_IN_USE = re.compile(r"address already in use|port is already allocated", re.I)
NAME_IN_USE = re.compile(r"is already in use by|that name is already in use|Conflict\. The container name", re.I)
IMAGE_MISSING = re.compile(r"image not known|no such image|unable to find image|pinging container registry|"
                           r"manifest unknown|repository does not exist|pull access denied|failed to find image", re.I)
# The engine itself cannot be reached: what a build prints then is no build failure (it may pass).
ENGINE_DOWN = re.compile(r"cannot connect to the docker daemon|cannot connect to podman|"
                         r"is the docker daemon running|unable to connect to podman socket", re.I)
# The engine refused the container as asked (a device it has no driver for, a command the image lacks,
# a malformed argument): asking again will not help, so such a failure is permanent.
REFUSED = re.compile(r"unresolvable CDI devices|could not select device driver|OCI runtime|"
                     r"executable file not found|invalid reference format|invalid (mount|volume|argument)", re.I)


def _argv_after(argv: list[str], flag: str) -> str:
    """The argument after `flag` in an engine argv ("" when absent): the container name after
    `--name`, the image after `--`."""
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else ""


def _said(words: re.Pattern[str], output: str) -> str:
    """The engine's line that says it (the last one holding `words`), without docker's `docker: ` prefix."""
    line = next((ln for ln in reversed(output.splitlines()) if words.search(ln)), "")
    return line.strip().removeprefix("docker: ")[:300]


def classify(argv: list[str], returncode: int, output: str) -> EngineError:
    """The error a failed engine command means, by what the engine said (`output`: its stderr, or
    everything it printed). The command itself travels as the cause (argv, exit code, stderr tail)."""
    command = CommandError(argv, returncode, output)
    engine = next((Path(a).name for a in argv if Path(a).name in ENGINES), "the engine")
    err: EngineError
    if PORT_IN_USE.search(output):
        err = PortInUse(f"the host port is taken: {_said(PORT_IN_USE, output)}", hint="another port is chosen")
    elif NAME_IN_USE.search(output):
        name = _argv_after(argv, "--name")
        err = NameInUse(f"a container named {name or '(see below)'} exists already: {_said(NAME_IN_USE, output)}",
                        hint=f"see `{engine} ps -a --filter name={name}`" if name else "")
    elif IMAGE_MISSING.search(output):
        image = _argv_after(argv, "--")
        err = ImageMissing(f"the image {image or '(see below)'} is not in {engine}'s image store: "
                           f"{_said(IMAGE_MISSING, output)}", hint=f"see `{engine} images`")
    else:
        command.temporary = bool(ENGINE_DOWN.search(output)) or not REFUSED.search(output)
        return command
    err.__cause__ = command
    return err


def detect_engine(preferred: Optional[str] = None) -> str:
    """The engine binary to use: `preferred` (from SUBSTRATUS_ENGINE) or the first that works."""
    if preferred:
        if shutil.which(preferred) is None:
            raise EngineError(f"SUBSTRATUS_ENGINE={preferred!r} is not on PATH",
                              hint="install it, or unset SUBSTRATUS_ENGINE to use podman or docker")
        return preferred
    for name in ENGINES:
        if shutil.which(name) and _engine_answers(name):
            return name
    raise EngineError("no working container engine: neither `podman version` nor `docker version` answered",
                      hint="run `make setup` (installs podman), or start Docker, or set SUBSTRATUS_ENGINE")


def _engine_answers(name: str) -> bool:
    """Whether the engine's server side answers. `version` with the server's field does that in a tenth
    of the time `info` takes (the control plane's start-up waits on it)."""
    try:
        proc = subprocess.run([name, "version", "--format", "{{.Server.Version}}" if name == "docker"
                               else "{{.Client.Version}}"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and bool(proc.stdout.strip())


def gpu_run_args(engine: str) -> list[str]:
    """GPU pass-through flags: docker's `--gpus`, podman's CDI device."""
    if Path(engine).name == "docker":
        return ["--gpus", "all"]
    return ["--device", "nvidia.com/gpu=all"]


# Where podman (rootful and rootless alike) reads CDI specs; `nvidia-ctk cdi generate
# --output=/etc/cdi/nvidia.yaml` writes NVIDIA's.
CDI_SPEC_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))


def cdi_has_nvidia(dirs: tuple[Path, ...]) -> bool:
    """Whether a CDI spec for NVIDIA GPUs (nvidia*.yaml or .json) lies in one of `dirs`."""
    return any(any(d.glob("nvidia*.yaml")) or any(d.glob("nvidia*.json")) for d in dirs if d.is_dir())


def run_argv(engine: str, spec: RunSpec, *, detach: bool, remove: bool = False, own_network: Optional[str] = None,
             default_memory: Optional[int] = None) -> list[str]:
    """The full `run` argv for a spec. Pure, so unit tests can check it.

    Secret values are not in it: `-e NAME` takes the value from the engine's environment.
    `own_network`: the network mode that gives a container a network stack of its own (podman's
    slirp4netns), used for every container that has a network; `default_memory`: the memory
    limit of a container whose spec sets none.
    """
    argv = [engine, "run"]
    if detach:
        argv.append("-d")
    if remove:
        argv.append("--rm")
    argv += ["--name", spec.name, *HARDENING, *log_args(engine)]
    for k, v in sorted(spec.labels.items()):
        argv += ["--label", f"{k}={v}"]
    for k, v in sorted(spec.env.items()):
        argv += ["-e", f"{k}={v}"]
    for k in sorted(spec.secret_env):
        if not ENV_NAME.match(k):
            raise EngineError(f"secret environment variable name {k!r} is not valid")
        argv += ["-e", k]  # the value comes from the engine process's environment, not its argv
    for m in spec.mounts:
        argv += ["-v", f"{m.source}:{m.target}" + (":ro" if m.read_only else "")]
    for cport, hport in sorted(spec.ports.items()):
        argv += ["-p", f"{spec.publish_address}:{hport}:{cport}"]
    argv += limit_args(spec, default_memory)
    if spec.workdir:
        argv += ["-w", spec.workdir]
    if not spec.network:
        argv += ["--network", "none"]  # also skips setting up a network namespace: ~0.2 s a run here
    elif own_network:
        argv += ["--network", own_network]  # not on the shared bridge: no other container reaches it
    if spec.gpu:
        argv += gpu_run_args(engine)
    command = list(spec.command)
    if spec.entrypoint is not None:
        argv += ["--entrypoint", spec.entrypoint[0] if spec.entrypoint else ""]
        command = list(spec.entrypoint[1:]) + command
    return argv + ["--", spec.image] + command


def limit_args(spec: RunSpec, default_memory: Optional[int] = None) -> list[str]:
    """spec.resources.limits as engine flags; swap is not extra memory (as on Kubernetes). Without a
    memory limit in the spec, `default_memory` (DEFAULT_MEMORY_SHARE of this machine's)."""
    out: list[str] = []
    if spec.limits.cpus is not None:
        out += ["--cpus", f"{spec.limits.cpus:g}"]
    memory = spec.limits.memory if spec.limits.memory is not None else default_memory
    if memory is not None:
        out += ["--memory", f"{memory}b", "--memory-swap", f"{memory}b"]
    return out


def log_args(engine: str) -> list[str]:
    """A container's output is kept up to LOG_MAX_SIZE (the engine drops the oldest beyond it). The
    driver is named because `max-size` means nothing to journald: podman's k8s-file and docker's
    json-file are always there and both rotate."""
    if Path(engine).name == "docker":
        return ["--log-driver", "json-file", "--log-opt", f"max-size={LOG_MAX_SIZE}", "--log-opt", "max-file=1"]
    return ["--log-driver", "k8s-file", "--log-opt", f"max-size={LOG_MAX_SIZE}"]


def own_network_mode(engine: str) -> Optional[str]:
    """podman with slirp4netns: each container gets its own user-mode network stack, reaching out
    but not reachable by other containers (nor reaching the host's loopback); its published ports
    work as on the bridge. None (the engine's default bridge) where there is none, and on docker."""
    if Path(engine).name == "podman" and shutil.which("slirp4netns"):
        return "slirp4netns"
    return None


def default_memory_limit(meminfo: Path = Path("/proc/meminfo")) -> Optional[int]:
    """DEFAULT_MEMORY_SHARE of this machine's memory, so that one container cannot take the machine
    (and the control plane) down; None where the machine does not say (e.g. macOS)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(int(line.split()[1]) * 1024 * DEFAULT_MEMORY_SHARE) // 2**20 * 2**20
    except (OSError, ValueError, IndexError):
        return None
    return None


def run_env(spec: RunSpec) -> Optional[dict[str, str]]:
    """The engine process's environment: ours plus the secrets its `-e NAME` flags read."""
    return {**os.environ, **spec.secret_env} if spec.secret_env else None


def build_argv(engine: str, spec: BuildSpec, extra: list[str], labelled: Optional[Path] = None) -> list[str]:
    """`labelled`: the Dockerfile with the labels already in it (labelled_dockerfile); without it
    the labels are --label flags."""
    argv = [engine, "build", "-t", spec.tag]
    if labelled is not None:
        argv += ["-f", str(labelled)]
    else:
        if spec.dockerfile is not None:
            argv += ["-f", str(spec.dockerfile)]
        for k, v in sorted(spec.labels.items()):
            argv += ["--label", f"{k}={v}"]
    for k, v in sorted(spec.build_args.items()):
        argv += ["--build-arg", f"{k}={v}"]
    return argv + extra + ["--", str(spec.context)]


ESCAPE_DIRECTIVE = re.compile(r"^\s*#\s*escape\s*=", re.I | re.M)


def label_instruction(labels: dict[str, str]) -> str:
    """One LABEL instruction for all labels, each key and value double-quoted with the
    characters a Dockerfile treats specially (backslash, quote, `$`) escaped."""
    def quote(text: str) -> str:
        text = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
        return '"' + text.replace("\r", " ").replace("\n", " ") + '"'
    return "LABEL " + " ".join(f"{quote(k)}={quote(v)}" for k, v in sorted(labels.items()))


def labelled_dockerfile_text(engine: str, spec: BuildSpec) -> Optional[str]:
    """The build's Dockerfile with one LABEL line appended (it labels the last stage, the image
    built, as --label does), or None when there is nothing to add or it cannot be read (then
    --label flags are used and the engine reports a missing Dockerfile itself).

    Why: podman (buildah 1.28) turns every --label into a LABEL step of its own, each a
    committed layer: 13 labels cost ~1.5 s on a trained image that otherwise builds in 0.4 s."""
    if not spec.labels:
        return None
    if spec.dockerfile is not None:
        candidates = [spec.dockerfile]
    else:
        names = ("Dockerfile",) if Path(engine).name == "docker" else ("Containerfile", "Dockerfile")
        candidates = [spec.context / n for n in names]
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if ESCAPE_DIRECTIVE.search(text):
            return None  # another escape character changes how the quoted line reads: use the flags
        return text.rstrip("\n") + "\n" + label_instruction(spec.labels) + "\n"
    return None


class EngineRuntime:
    """A Runtime backed by the podman or docker CLI."""

    def __init__(self, engine: str, *, build_extra_args: Optional[list[str]] = None,
                 build_timeout: float = DEFAULT_BUILD_TIMEOUT) -> None:
        self.engine = engine
        self.build_extra_args = list(build_extra_args or [])
        self.build_timeout = build_timeout
        self.nice: list[str] = []  # ["nice", "-n", "10"] in the background() view
        self.own_network = own_network_mode(engine)
        self.default_memory = default_memory_limit()

    def background(self) -> "EngineRuntime":
        """The same engine, each of its processes started under `nice -n 10` (podman's conmon and the
        container inherit it; a docker client only asks its daemon, so there it changes little)."""
        view = copy.copy(self)
        view.nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        return view

    # -- helpers ---------------------------------------------------------------------
    def _run(self, args: list[str], *, timeout: float = 120, check: bool = True,
             env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess[str]:
        argv = [*self.nice, self.engine, *args]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, **env} if env else None, stdin=subprocess.DEVNULL)
        except FileNotFoundError as err:
            raise EngineError(f"{self.engine} is not installed", hint="run `make setup`") from err
        except subprocess.TimeoutExpired as err:
            raise EngineError(f"`{' '.join(argv[:4])}` did not finish in {timeout:.0f}s",
                              hint=f"check that `{self.engine} info` answers") from err
        if check and proc.returncode != 0:
            raise classify(argv, proc.returncode, proc.stderr or proc.stdout)
        return proc

    def _inspect(self, what: str, refs: list[str]) -> list[dict[str, Any]]:
        if not refs:
            return []
        proc = self._run([what, "inspect", "--", *refs], check=False)
        if proc.returncode != 0 and "image not known" in proc.stderr and not proc.stdout.strip().startswith("["):
            proc = self._run([what, "inspect", "--", *refs], check=False)  # a removal elsewhere raced the look
        if proc.returncode != 0 and not proc.stdout.strip().startswith("["):
            return []
        try:
            data = json.loads(proc.stdout or "[]")
        except json.JSONDecodeError:
            return []
        return data if isinstance(data, list) else []

    # -- images ----------------------------------------------------------------------
    def build(self, spec: BuildSpec, log: LogSink) -> Optional[str]:
        """Build; returns the new image's id, which the engine writes to an --iidfile (so callers need
        not inspect the image they just built), or None when it wrote none."""
        fd, iid = tempfile.mkstemp(prefix="sub-build-", suffix=".iid")
        os.close(fd)
        extra = [*self.build_extra_args, "--iidfile", iid]
        if not spec.layer_cache and Path(self.engine).name != "docker":
            extra.append("--layers=false")  # one commit at the end instead of one per instruction
        text = labelled_dockerfile_text(self.engine, spec)
        name = ""
        try:
            if text is None:
                self._build(build_argv(self.engine, spec, extra), log)
            else:
                fd, name = tempfile.mkstemp(prefix="sub-build-", suffix=".Dockerfile")
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                self._build(build_argv(self.engine, spec, extra, labelled=Path(name)), log)
            written = Path(iid).read_text(encoding="utf-8").strip()
            return normalise_id(written) if re.fullmatch(r"(sha256:)?[0-9a-f]{64}", written) else None
        finally:
            os.unlink(iid)
            if name:
                os.unlink(name)

    def _build(self, argv: list[str], log: LogSink) -> None:
        recent: deque[str] = deque(maxlen=40)
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    errors="replace", bufsize=1, stdin=subprocess.DEVNULL)
        except FileNotFoundError as err:
            raise EngineError(f"{self.engine} is not installed", hint="run `make setup`") from err
        deadline = Deadline(proc, self.build_timeout)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                line = line.rstrip("\n")[:MAX_LINE]
                recent.append(line)
                log(line)
            code = proc.wait()
        finally:
            deadline.cancel()
        if deadline.expired:
            raise BuildError(f"image build did not finish in {self.build_timeout:.0f}s and was stopped",
                             log_tail="\n".join(recent),
                             hint="raise SUBSTRATUS_BUILD_TIMEOUT (seconds) for the control plane, or make the "
                                  "build faster; the build log is in `sub logs`")
        if code != 0 and ENGINE_DOWN.search("\n".join(recent)):
            raise classify(argv, code, "\n".join(recent))  # the engine failed, not the build: try again later
        if code != 0:
            raise BuildError(f"image build failed (exit {code})", log_tail="\n".join(recent),
                             hint="fix the Dockerfile or the build context; the full build log is in `sub logs`")

    def image_info(self, ref: str) -> Optional[ImageInfo]:
        data = self._inspect("image", [ref])
        if not data:
            return None
        cfg = data[0].get("Config") or {}
        env = dict(e.split("=", 1) for e in (cfg.get("Env") or []) if "=" in e)
        return ImageInfo(ref=ref, id=normalise_id(data[0].get("Id", "")), workdir=cfg.get("WorkingDir") or "",
                         env=env, labels=cfg.get("Labels") or {}, entrypoint=cfg.get("Entrypoint") or [],
                         cmd=cfg.get("Cmd") or [], onbuild=[str(t) for t in cfg.get("OnBuild") or []])

    def remove_image(self, ref: str) -> bool:
        return self._run(["rmi", "-f", "--", ref], check=False).returncode == 0

    # -- base images (`sub images build`; not part of the Runtime protocol) ------------
    def pull(self, ref: str, timeout: float) -> bool:
        """Try to pull `ref`; False when it cannot be had (no registry, offline, timeout)."""
        try:
            return self._run(["pull", "-q", ref], check=False, timeout=timeout).returncode == 0
        except EngineError:  # timed out
            return False

    def tag(self, source: str, target: str) -> None:
        self._run(["tag", source, target])

    def server_components(self) -> list[str]:
        """Names in `version`'s Server.Components: "Engine" for Docker, "Podman Engine" for podman's API."""
        proc = self._run(["version", "--format", "{{json .Server}}"], check=False, timeout=30)
        try:
            server = json.loads(proc.stdout or "{}")
        except json.JSONDecodeError:
            return []
        components = server.get("Components") if isinstance(server, dict) else None
        return [str(c.get("Name", "")) for c in components or [] if isinstance(c, dict)]

    def import_rootfs(self, rootfs: Path, ref: str, changes: list[str]) -> None:
        """`tar -C rootfs -c . | ENGINE import --change ... - ref`: a root filesystem as an image."""
        argv = [self.engine, "import", *[a for c in changes for a in ("--change", c)], "-", ref]
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            proc = subprocess.run(argv, stdin=tar.stdout, capture_output=True, text=True, timeout=1800)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar_err = tar.communicate()[1].decode(errors="replace")
        if tar.returncode != 0:
            raise CommandError(["tar", "-C", str(rootfs), "-c", "."], tar.returncode, tar_err)
        if proc.returncode != 0:
            raise CommandError(argv, proc.returncode, proc.stderr or proc.stdout)

    def images(self) -> dict[str, str]:
        # podman's listing can fail while another process removes an image ("image not known"): that race
        # is transient, so look again a few times before calling it an error.
        for attempt in range(4):
            proc = self._run(["images", "--no-trunc", "--format", "{{json .}}"], timeout=60, check=False)
            if proc.returncode == 0:
                return parse_image_list(proc.stdout)
            time.sleep(0.1 * (attempt + 1))
        raise CommandError([self.engine, "images"], proc.returncode, proc.stderr or proc.stdout)

    def events(self, labels: dict[str, str]) -> "EngineEvents":
        # The engines OR several label filters on events: filter on one, and keep only events that
        # carry all of `labels` (EngineEvents checks).
        first = sorted(labels.items())[-1:]
        return EngineEvents(self.engine, [[f"label={k}={v}" for k, v in first], ["type=image"]], labels)

    # -- containers ------------------------------------------------------------------
    def run(self, spec: RunSpec) -> ContainerState:
        argv = run_argv(self.engine, spec, detach=True, own_network=self.own_network,
                        default_memory=self.default_memory)
        container_id = self._run(argv[1:], timeout=300, env=spec.secret_env).stdout.strip().splitlines()[-1:]
        if not container_id or not re.fullmatch(r"[0-9a-f]{12,64}", container_id[0]):
            for attempt in range(3):
                state = self.container(spec.name)
                if state is not None:
                    return state
                time.sleep(0.1 * (attempt + 1))
        # Started: the engine said so and printed its id. What it does next (it may even have exited
        # by now) comes from the engine's events; inspecting here too cost ~0.3-0.7 s on a busy
        # engine, on the critical path of every job.
        return ContainerState(name=spec.name, id=container_id[0] if container_id else "", image=spec.image,
                              labels=dict(spec.labels), running=True, exit_code=None, status="running",
                              ports=dict(spec.ports))

    def run_once(self, spec: RunSpec, timeout: float) -> Completed:
        labels = {MANAGED: "true", LABEL_PREFIX + "role": "once", **spec.labels}
        spec = RunSpec(**{**spec.__dict__, "name": spec.name or f"sub-once-{uuid.uuid4().hex[:10]}",
                          "labels": labels})
        argv = [*self.nice, *run_argv(self.engine, spec, detach=False, remove=True, own_network=self.own_network,
                                      default_memory=self.default_memory)]
        try:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  errors="replace", timeout=timeout, stdin=subprocess.DEVNULL, env=run_env(spec))
        except subprocess.TimeoutExpired as err:
            self.remove(spec.name)
            out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
            return Completed(exit_code=124, output=out + f"\n(timed out after {timeout:.0f}s)", timed_out=True)
        except BaseException:  # Ctrl-C and friends: never leave the container behind
            self.remove(spec.name)
            raise
        if proc.returncode == ENGINE_FAILED:  # the engine could not run it (the command never started)
            raise classify(argv, proc.returncode, proc.stdout)
        return Completed(exit_code=proc.returncode, output=proc.stdout)

    def container(self, name: str) -> Optional[ContainerState]:
        data = self._inspect("container", [name])
        return _state(data[0]) if data else None

    def containers(self, labels: dict[str, str]) -> list[ContainerState]:
        args = ["ps", "-a", "-q", "--no-trunc"]
        for k, v in sorted(labels.items()):
            args += ["--filter", f"label={k}={v}"]
        ids = self._run(args).stdout.split()
        found = [_state(d) for d in self._inspect("container", ids)]
        return [c for c in found if all(c.labels.get(k) == v for k, v in labels.items())]

    def logs(self, name: str, *, tail: Optional[int] = None, follow: bool = False) -> Iterator[str]:
        proc = subprocess.Popen([*self.nice, *logs_argv(self.engine, name, tail, follow)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                                stdin=subprocess.DEVNULL)
        deadline = None if follow else Deadline(proc, LOGS_TIMEOUT)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                yield line.rstrip("\n")[:MAX_LINE]
        finally:
            if deadline is not None:
                deadline.cancel()
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    async def stream_logs(self, name: str, *, tail: Optional[int] = None, follow: bool = False) -> AsyncGenerator[str, None]:
        proc = await asyncio.create_subprocess_exec(*logs_argv(self.engine, name, tail, follow),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                    stdin=asyncio.subprocess.DEVNULL)
        assert proc.stdout is not None
        try:
            async for line in split_lines(proc.stdout):
                yield line
        finally:
            await reap(proc)

    def stop(self, name: str, timeout: int = 10) -> bool:
        return self._run(["stop", "-t", str(timeout), "--", name], check=False, timeout=timeout + 60).returncode == 0

    def remove(self, name: str) -> bool:
        """Stop and remove; True when a container of that name existed (podman's `rm -f` exits 0 either
        way, so the removed name it prints is what tells)."""
        grace = ["-t", "5"] if Path(self.engine).name == "podman" else []
        proc = self._run(["rm", "-f", *grace, "--", name], check=False, timeout=90)
        return proc.returncode == 0 and bool(proc.stdout.strip())

    def exec(self, name: str, argv: list[str], *, stdin: Optional[bytes] = None, workdir: Optional[str] = None,
             timeout: float = 60) -> ExecResult:
        cmd = [self.engine, "exec"] + (["-i"] if stdin is not None else []) + (["-w", workdir] if workdir else [])
        try:
            # A session of its own: a Ctrl-C meant for `sub notebook` must not cut a file copy in half.
            proc = subprocess.run(cmd + ["--", name, *argv], input=stdin if stdin is not None else b"",
                                  capture_output=True, timeout=timeout, start_new_session=True)
        except FileNotFoundError as err:
            raise EngineError(f"{self.engine} is not installed", hint="run `make setup`") from err
        except subprocess.TimeoutExpired as err:
            raise EngineError(f"`{self.engine} exec {name} {argv[0] if argv else ''}` did not finish in "
                              f"{timeout:.0f}s", hint=f"check the container with `{self.engine} ps`") from err
        stderr = proc.stderr.decode(errors="replace")
        if proc.returncode != 0 and EXEC_UNAVAILABLE.search(stderr):
            raise EngineError(f"cannot run a command in container {name}: {stderr.strip()[:300]}",
                              hint=f"is it running? see `{self.engine} ps -a --filter name={name}`")
        return ExecResult(exit_code=proc.returncode, stdout=proc.stdout, stderr=stderr)

    def gpu_available(self) -> bool:
        if shutil.which("nvidia-smi") is None:
            return False
        if Path(self.engine).name == "docker":
            info = self._run(["info", "--format", "{{json .Runtimes}}"], check=False).stdout
            return "nvidia" in info
        return cdi_has_nvidia(CDI_SPEC_DIRS)


def parse_image_list(text: str) -> dict[str, str]:
    """`images --format '{{json .}}'`: podman prints one array, docker one object a line."""
    text = text.strip()
    if not text:
        return {}
    try:
        docs = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines()]
    except json.JSONDecodeError:
        return {}
    out: dict[str, str] = {}
    for d in docs:
        image_id = normalise_id(str(d.get("Id") or d.get("ID") or ""))
        names = d.get("Names") or ([f"{d['Repository']}:{d['Tag']}"] if d.get("Repository") not in (None, "<none>")
                                   and d.get("Tag") not in (None, "<none>") else [])
        for name in names:
            out[str(name)] = image_id
    return out


def parse_event(line: str) -> Optional[EngineEvent]:
    """One line of `events --format '{{json .}}'` from podman or docker."""
    try:
        d = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(d, dict):
        return None
    if "Actor" in d:  # docker: {"Type", "Action", "Actor": {"ID", "Attributes": {name, labels...}}}
        actor = d.get("Actor") or {}
        attrs = dict(actor.get("Attributes") or {})
        name = attrs.pop("name", "") if d.get("Type") == "container" else attrs.get("name", actor.get("ID", ""))
        action = str(d.get("Action", "")).split(":")[0]
        code = attrs.pop("exitCode", None) if d.get("Type") == "container" and action == "die" else None
        image = str(attrs.pop("image", "")) if d.get("Type") == "container" else ""
        return EngineEvent(type=str(d.get("Type", "")), action="died" if action == "die" else action,
                           name=str(name), id=str(actor.get("ID", "")), labels=attrs, exit_code=_code(code),
                           image=image)
    action = str(d.get("Status", ""))
    return EngineEvent(type=str(d.get("Type", "")), action=action, name=str(d.get("Name", "")),
                       id=str(d.get("ID", "")), labels=dict(d.get("Attributes") or {}),
                       # podman writes the field with `omitempty`: a died event without it exited 0
                       exit_code=_code(d.get("ContainerExitCode", 0)) if action == "died" else None,
                       image=str(d.get("Image", "")) if d.get("Type") == "container" else "")


def _code(value: Any) -> Optional[int]:
    """An exit code as the engines write it in events (an int, or a string of one)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,4}", value.strip()):
        return int(value)
    return None


class EngineEvents:
    """`podman|docker events` processes merged into one blocking stream; `close()` kills them."""

    def __init__(self, engine: str, filter_sets: list[list[str]], labels: dict[str, str]) -> None:
        self.labels = labels
        self._queue: "queue.Queue[Optional[EngineEvent]]" = queue.Queue()
        self._procs: list[subprocess.Popen[str]] = []
        self._closed = threading.Event()
        for filters in filter_sets:
            argv = [engine, "events", "--format", "{{json .}}"]
            for f in filters:
                argv += ["--filter", f]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                    errors="replace", bufsize=1, stdin=subprocess.DEVNULL)
            self._procs.append(proc)
            threading.Thread(target=self._pump, args=(proc,), daemon=True, name="engine-events").start()

    def _pump(self, proc: "subprocess.Popen[str]") -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = parse_event(line)
            if event is not None and (event.type != "container" or
                                      all(event.labels.get(k) == v for k, v in self.labels.items())):
                self._queue.put(event)
        self._queue.put(None)  # this process ended: the stream ends (the caller reconnects and relists)

    def __iter__(self) -> Iterator[EngineEvent]:
        while not self._closed.is_set():
            event = self._queue.get()
            if event is None:
                break
            yield event
        self.close()

    def close(self) -> None:
        self._closed.set()
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self._queue.put(None)


def _state(d: dict[str, Any]) -> ContainerState:
    st = d.get("State") or {}
    cfg = d.get("Config") or {}
    ports: dict[int, int] = {}
    for key, binds in ((d.get("NetworkSettings") or {}).get("Ports") or {}).items():
        for b in binds or []:
            if b.get("HostPort"):
                ports[int(key.split("/")[0])] = int(b["HostPort"])
    status = st.get("Status", "unknown")
    return ContainerState(
        name=str(d.get("Name", "")).lstrip("/"),
        id=d.get("Id", ""),
        image=cfg.get("Image") or d.get("ImageName") or "",
        labels=cfg.get("Labels") or {},
        running=bool(st.get("Running")),
        exit_code=None if st.get("Running") or status == "created" else st.get("ExitCode"),
        status=status,
        ports=ports,
        started_at=st.get("StartedAt", "") or "",
        finished_at=st.get("FinishedAt", "") or "",
    )
