"""The embedded control plane process: reconcile loop + HTTP API on 127.0.0.1.

Started by the CLI (`sub up`, or on demand) as `python -m substratus.api.daemon`.
Configuration is read here once and passed down. One daemon per
$SUBSTRATUS_HOME (a lock file guards it). Containers outlive it: on start it
adopts whatever runs with its labels.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Optional

import uvicorn

from substratus.api.app import create_app
from substratus.build.contract import free_port
from substratus.controlplane.controller import Controller
from substratus.controlplane.layout import Layout
from substratus.controlplane.service import ControlPlane
from substratus.controlplane.store import Store
from substratus.runtimes.engine import EngineRuntime, detect_engine

log = logging.getLogger("substratus.daemon")


@dataclass(frozen=True)
class Settings:
    home: Path
    engine: Optional[str]
    port: int
    ready_timeout: float
    keep_runs: int = 2
    gc_period: float = 600.0
    build_workers: int = 1

    @staticmethod
    def from_env() -> "Settings":
        env = os.environ
        return Settings(home=default_home(), engine=env.get("SUBSTRATUS_ENGINE") or None,
                        port=int(env.get("SUBSTRATUS_PORT", "0")),
                        ready_timeout=float(env.get("SUBSTRATUS_READY_TIMEOUT", "600")),
                        keep_runs=int(env.get("SUBSTRATUS_KEEP_RUNS", "2")),
                        gc_period=float(env.get("SUBSTRATUS_GC_PERIOD", "600")),
                        build_workers=int(env.get("SUBSTRATUS_BUILD_WORKERS", "1")))


def default_home() -> Path:
    return Path(os.environ.get("SUBSTRATUS_HOME") or Path.home() / ".substratus").expanduser().resolve()


def ensure_token(path: Path) -> str:
    """Create the API token once, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    os.chmod(path, 0o600)
    return path.read_text().strip()


def write_endpoint(layout: Layout, port: int) -> None:
    tmp = layout.endpoint_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "port": port, "url": f"http://127.0.0.1:{port}"}))
    os.replace(tmp, layout.endpoint_file)


def main() -> int:
    logging.basicConfig(level=os.environ.get("SUBSTRATUS_LOG_LEVEL", "INFO").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    layout = Layout(settings.home)
    layout.home.mkdir(parents=True, exist_ok=True)
    lock = open(layout.home / "controlplane.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another control plane already runs for {layout.home}", file=sys.stderr)
        return 1
    token = ensure_token(layout.token_file)
    runtime = EngineRuntime(detect_engine(settings.engine))
    store = Store(layout.db)
    controller = Controller(store, runtime, layout, ready_timeout=settings.ready_timeout,
                            keep_runs=settings.keep_runs, gc_period=settings.gc_period,
                            build_workers=settings.build_workers)
    app = create_app(ControlPlane(store, runtime, layout, controller), token)
    port = settings.port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                          access_log=False, timeout_graceful_shutdown=2))
    log.info("control plane for %s on 127.0.0.1:%d using %s", layout.home, port, runtime.engine)
    write_endpoint(layout, port)
    controller.start()

    def _term(signum: int, frame: Optional[FrameType]) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, _term)
    try:
        server.run()
    finally:
        controller.stop()
        layout.endpoint_file.unlink(missing_ok=True)
        store.close()
        log.info("control plane stopped; containers keep running and are adopted on the next start")
    return 0


if __name__ == "__main__":
    sys.exit(main())
