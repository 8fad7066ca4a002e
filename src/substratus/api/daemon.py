"""The embedded control plane process: reconcile loop + HTTP API.

Started by the CLI (`sub up`, or on demand) as `python -m substratus.api.daemon`.
Configuration is read here once and passed down. One daemon per
$SUBSTRATUS_HOME (a lock file guards it). Containers outlive it: on start it
adopts whatever runs with its labels.

Start-up order matters for trust: umask 077 and a 0700 home first; a token of
at least 32 characters (a shorter or empty one is replaced, and the log says
so); both listening sockets bound (the Unix socket the CLI uses, and
127.0.0.1:PORT) before the endpoint file names them.

Start-up order matters for speed too: the `sub apply` that starts the daemon
hands its objects over (`--first-apply FILE --answer-fd N`), and they are
applied as soon as the controller runs, before the web framework is imported
(about half a second on a 2-core machine, in which the first image builds).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Optional

from substratus.api import MAX_BODY_BYTES, MIN_TOKEN_LENGTH, unixsock
from substratus.api.errors import error_body, status_for
from substratus.errors import SubstratusError, ValidationError
from substratus.local.privatefiles import read_private, secure_home, write_private
from substratus.reconcile.layout import Layout
from substratus.runtimes import advisories
from substratus.runtimes.engine import DEFAULT_BUILD_TIMEOUT, EngineRuntime, detect_engine

if TYPE_CHECKING:
    from substratus.local.service import ControlPlane

log = logging.getLogger("substratus.daemon")
TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_.~+/=-]+$")


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    home: Path
    engine: Optional[str]
    port: int
    ready_timeout: float
    build_timeout: float = DEFAULT_BUILD_TIMEOUT
    keep_runs: int = 2
    gc_period: float = 600.0
    build_workers: int = 1
    max_output: int = 64 * 2**30  # bytes a job's output may hold (local.outputs)

    @staticmethod
    def from_env() -> "Settings":
        port = _number("SUBSTRATUS_PORT", 0, int)
        if not 0 <= port <= 65535:
            raise SettingsError(f"SUBSTRATUS_PORT={port} is not a port number (0-65535; 0 picks a free one)")
        keep_runs = _number("SUBSTRATUS_KEEP_RUNS", 2, int)
        if keep_runs < 1:
            raise SettingsError(f"SUBSTRATUS_KEEP_RUNS={keep_runs} must be at least 1")
        build_workers = _number("SUBSTRATUS_BUILD_WORKERS", default_build_workers(), int)
        if build_workers < 1:
            raise SettingsError(f"SUBSTRATUS_BUILD_WORKERS={build_workers} must be at least 1")
        return Settings(home=default_home(), engine=os.environ.get("SUBSTRATUS_ENGINE") or None, port=int(port),
                        ready_timeout=_number("SUBSTRATUS_READY_TIMEOUT", 600.0, float, positive=True),
                        build_timeout=_number("SUBSTRATUS_BUILD_TIMEOUT", DEFAULT_BUILD_TIMEOUT, float,
                                              positive=True),
                        keep_runs=int(keep_runs),
                        gc_period=_number("SUBSTRATUS_GC_PERIOD", 600.0, float, non_negative=True),
                        build_workers=int(build_workers), max_output=_quantity("SUBSTRATUS_MAX_OUTPUT", 64 * 2**30))


def _quantity(name: str, default: int) -> int:
    """A size from the environment, as Kubernetes writes it (`64Gi`, `500M`, bytes)."""
    from substratus.resources.limits import parse_quantity

    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = parse_quantity(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a size: write e.g. '64Gi' or '500Mi'") from None
    if value < 2**20 or value != value.to_integral_value():
        raise SettingsError(f"{name}={raw!r} must be a whole number of bytes, at least 1Mi")
    return int(value)


def _number(name: str, default: float, kind: type[int] | type[float], positive: bool = False,
            non_negative: bool = False) -> float:
    """A numeric setting from the environment; SettingsError naming the variable when it is not one."""
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise SettingsError(f"{name}={raw!r} is not a finite number")
    if positive and not value > 0:
        raise SettingsError(f"{name}={raw!r} must be greater than 0 (seconds)")
    if non_negative and value < 0:
        raise SettingsError(f"{name}={raw!r} must be 0 or more")
    return value


def default_build_workers() -> int:
    """One build at a time on a machine of 2 CPUs or fewer (two builds side by side there took longer
    than one after the other: each is CPU-bound, and the engine's other work runs beside them), two
    on larger ones."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return 1 if cpus <= 2 else 2


def default_home() -> Path:
    return Path(os.environ.get("SUBSTRATUS_HOME") or Path.home() / ".substratus").expanduser().resolve()


def ensure_token(path: Path) -> str:
    """The API token, readable by its owner only; a missing, short or malformed one is replaced.

    An empty token file once meant that an empty `Authorization` matched it.
    """
    try:
        token = read_private(path).strip()
    except FileNotFoundError:
        token = None
    except OSError as err:
        log.warning("cannot read the API token %s (%s); writing a new one", path, err)
        token = ""
    if token is not None and len(token) >= MIN_TOKEN_LENGTH and TOKEN_CHARS.match(token):
        os.chmod(path, 0o600)
        return token
    if token is not None:
        log.warning("the API token in %s was shorter than %d characters or malformed; a new one was written "
                    "(clients read it from that file)", path, MIN_TOKEN_LENGTH)
    token = secrets.token_urlsafe(32)
    write_private(path, token)
    return token


def write_endpoint(layout: Layout, port: int) -> None:
    write_private(layout.endpoint_file, json.dumps({"pid": os.getpid(), "port": port,
                                                    "url": f"http://127.0.0.1:{port}",
                                                    "socket": str(layout.socket)}))


def bind_tcp(port: int) -> socket.socket:
    try:
        return socket.create_server(("127.0.0.1", port), backlog=128)
    except OSError as err:
        raise SettingsError(f"cannot listen on 127.0.0.1:{port}: {err.strerror}; unset SUBSTRATUS_PORT "
                            "(a free port is picked) or choose another") from None


@dataclass(frozen=True)
class FirstApply:
    """An apply handed over by the `sub` that started this daemon: the request (`{"objects": [...]}`)
    in a file of the private home, the answer (`{"status", "body"}`, the body the API would have sent)
    written to a pipe that `sub` holds open. Taken only once the lock is held."""

    request: Path
    answer_fd: int

    def run(self, cp: ControlPlane) -> None:
        status: int
        body: Any
        try:
            try:
                request = json.loads(read_private(self.request, limit=MAX_BODY_BYTES))  # `sub` sends no more
                objects = request.get("objects") if isinstance(request, dict) else None
                if not isinstance(objects, list):
                    raise ValidationError([("objects", f"{self.request} holds no list of manifests")])
                status, body = 200, cp.apply_documents(objects)
                log.info("applied %d objects handed over by the `sub apply` that started this control plane",
                         len(objects))
            except SubstratusError as err:
                status, body = status_for(err), error_body(err)
            except Exception as err:  # noqa: BLE001 - answered as the API answers an unexpected error
                log.exception("the first apply failed")
                status, body = 500, error_body(SubstratusError(f"the apply failed: {err}"))
            finally:
                self.request.unlink(missing_ok=True)
            with os.fdopen(self.answer_fd, "wb") as pipe:
                pipe.write(json.dumps({"status": status, "body": body}).encode())
        except OSError as err:  # `sub` went away; what was applied stays applied
            log.warning("could not answer the first apply: %s", err)


def parse_args(argv: list[str]) -> Optional[FirstApply]:
    """`--first-apply FILE --answer-fd N` (from `sub`), or nothing."""
    if not argv:
        return None
    if len(argv) == 4 and argv[0] == "--first-apply" and argv[2] == "--answer-fd" and argv[3].isdigit():
        return FirstApply(Path(argv[1]), int(argv[3]))
    raise SettingsError(f"unexpected arguments {argv!r}: the control plane takes none (run `sub up` to start it)")


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=os.environ.get("SUBSTRATUS_LOG_LEVEL", "INFO").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.umask(0o077)  # everything this process and its threads create is private
    try:
        first = parse_args(sys.argv[1:] if argv is None else argv)
        settings = Settings.from_env()
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    layout = Layout(settings.home)
    secure_home(layout.home)
    lock = open(layout.home / "controlplane.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another control plane already runs for {layout.home}", file=sys.stderr)
        return 1
    try:
        return serve(settings, layout, first)
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SubstratusError as err:  # no engine answers (or the one named is not installed)
        print(f"error: {err}", file=sys.stderr)
        return 3


def serve(settings: Settings, layout: Layout, first: Optional[FirstApply] = None) -> int:
    probe = ThreadPoolExecutor(1, "engine-probe")
    engine = probe.submit(detect_engine, settings.engine)  # the engine answers while we import
    probe.shutdown(wait=False)
    from substratus.local.controller import Controller
    from substratus.local.outputs import OutputLimits
    from substratus.local.service import ControlPlane
    from substratus.local.store import Store

    token = ensure_token(layout.token_file)
    runtime = EngineRuntime(engine.result(), build_timeout=settings.build_timeout)
    tcp = bind_tcp(settings.port)
    unix = unixsock.bind(layout.socket)  # listening: a client's request waits in the backlog until served
    port = int(tcp.getsockname()[1])
    store = Store(layout.db)
    controller = Controller(store, runtime, layout, ready_timeout=settings.ready_timeout,
                            keep_runs=settings.keep_runs, gc_period=settings.gc_period,
                            build_workers=settings.build_workers,
                            output_limits=OutputLimits(max_bytes=settings.max_output))
    cp = ControlPlane(store, runtime, layout, controller)
    controller.start()
    # Which published escapes apply to this engine, builder and runc (docs/security.md): off the start's path.
    threading.Thread(target=advisories.log_known_escapes, args=(runtime.engine, log), daemon=True,
                     name="engine-advisories").start()
    if first is not None:
        first.run(cp)

    import uvicorn  # the web stack, only now: the controller is already at work

    from substratus.api.app import create_app

    app = create_app(cp, token)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=2))
    log.info("control plane for %s on %s and 127.0.0.1:%d using %s", layout.home, layout.socket, port,
             runtime.engine)
    write_endpoint(layout, port)  # only now: both sockets are bound and listening

    def _term(signum: int, frame: Optional[FrameType]) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, _term)
    try:
        server.run(sockets=[tcp, unix])
    finally:
        controller.stop()
        layout.endpoint_file.unlink(missing_ok=True)
        layout.socket.unlink(missing_ok=True)
        store.close()
        log.info("control plane stopped; containers keep running and are adopted on the next start")
    return 0


if __name__ == "__main__":
    sys.exit(main())
