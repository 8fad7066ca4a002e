"""`python -m substratus.artifacts`: the helper containers of generated pods.

    fetch --store URL --map DIR=KEY... [--untar] [--write PATH=ENVVAR...]
        an init container: copy each KEY (file, directory, or with --untar a
        .tar.gz) into DIR before the main container starts; write the value of
        env var ENVVAR to PATH (a build's generated Dockerfile).
    sync --store URL --map DIR=KEY... [--once]
        a native sidecar: wait until Kubernetes stops it (SIGTERM, sent once the
        main container has exited), then upload each DIR to KEY and exit.
        --once uploads at once (for tests and manual recovery).

Runs in the operator image (podspec.OWN_UID, read-only root filesystem, /tmp an
emptyDir). Progress goes to stderr, one line per step; failures exit 1 with
the key, the store and the cause.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

from substratus.artifacts.store import ArtifactError, ArtifactStore

MOUNT_ENV = "SUBSTRATUS_ARTIFACTS_MOUNT"


def _pairs(values: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for value in values:
        left, sep, right = value.partition("=")
        if not sep or not left or not right:
            raise SystemExit(f"{flag} {value!r}: expected LEFT=RIGHT")
        out.append((left, right))
    return out


def _say(message: str) -> None:
    print(f"substratus-artifacts: {message}", file=sys.stderr, flush=True)


def _store(args: argparse.Namespace) -> ArtifactStore:
    mount = args.mount or os.environ.get(MOUNT_ENV)
    return ArtifactStore(args.store, mount=Path(mount) if mount else None)


def fetch(args: argparse.Namespace) -> int:
    store = _store(args)
    for directory, key in _pairs(args.map, "--map"):
        dest = Path(directory)
        n = store.extract_tarball(key, dest) if args.untar else store.download(key, dest)
        _say(f"fetched {n} file(s) from {store.uri(key)} into {dest}")
    for path, var in _pairs(args.write, "--write"):
        if var not in os.environ:
            raise ArtifactError(f"--write {path}={var}: env var {var} is not set")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(os.environ[var])
        _say(f"wrote {path} from ${var}")
    return 0


def sync(args: argparse.Namespace, stop: Optional[threading.Event] = None) -> int:
    store = _store(args)
    maps = _pairs(args.map, "--map")
    if not args.once:
        stop = stop or _stop_on_signals()
        _say(f"waiting for the main container to exit; then uploading {len(maps)} director(ies) to {store.url}")
        stop.wait()
    for directory, key in maps:
        n = store.upload_dir(Path(directory), key) if Path(directory).is_dir() else 0
        _say(f"uploaded {n} file(s) from {directory} to {store.uri(key)}")
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m substratus.artifacts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("fetch", "sync"):
        c = sub.add_parser(name)
        c.add_argument("--store", required=True, help="s3://BUCKET/PREFIX, gs://... or pvc://CLAIM/PREFIX")
        c.add_argument("--mount", help=f"where a pvc:// store is mounted (default ${MOUNT_ENV})")
        c.add_argument("--map", action="append", default=[], help="DIR=KEY")
    sub.choices["fetch"].add_argument("--untar", action="store_true", help="each KEY is a .tar.gz to unpack")
    sub.choices["fetch"].add_argument("--write", action="append", default=[], help="PATH=ENVVAR")
    sub.choices["sync"].add_argument("--once", action="store_true", help="upload now instead of on SIGTERM")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        return fetch(args) if args.command == "fetch" else sync(args)
    except ArtifactError as err:
        _say(f"ERROR: {err}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
