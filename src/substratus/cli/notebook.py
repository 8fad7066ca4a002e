"""`sub notebook [DIR]`: build DIR as a contract image, open a notebook on it, sync files both ways.

The flow a person sees: DIR (a Dockerfile with WORKDIR /model or /dataset,
and notebook.sh) is applied as a Model or Dataset with a `dir` source plus a
Notebook on it, both named after DIR; the build and start show as progress;
the notebook's URL goes to stdout (and to a browser unless --no-open); then
files sync both ways between DIR and the notebook's working directory every
second (`substratus.sync`). Ctrl-C does a last sync, suspends the notebook
(`suspend: true`, the image is kept for next time) and exits 130 with DIR
complete. Everything goes through the control plane's API except the file
copies, which use the container engine's `exec` (`sync.container`); the
Kubernetes operator will give the same command a `Side` over its API.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Optional

import click

from substratus.cli.backend import require_local
from substratus.cli.client import Client, home_dir
from substratus.cli.output import ready_condition
from substratus.cli.wait import wait_for
from substratus.errors import ValidationError
from substratus.resources.objectkey import ObjectKey
from substratus.sync.container import ContainerDir
from substratus.sync.ignore import Excludes
from substratus.sync.session import Syncer
from substratus.sync.sides import LocalDir

KIND_BY_WORKDIR = {"/model": "Model", "/dataset": "Dataset"}
LABEL = "substratus.ai/notebook"
CONTRACT_HINT = ("a contract image's directory has a Dockerfile with `WORKDIR /model` (a model) or `WORKDIR /dataset` "
                 "(a dataset) and puts notebook.sh on PATH; check one with `sub verify model DIR`")


def err(msg: str) -> None:
    click.echo(msg, err=True)


# ---- what DIR is ------------------------------------------------------------------------------

def dockerfile_workdir(text: str) -> Optional[str]:
    """The last WORKDIR of a Dockerfile (what the image ends with), normalised; None when there is none."""
    found = None
    for line in text.splitlines():
        m = re.match(r"^\s*WORKDIR\s+(\S+)\s*$", line, re.I)
        if m:
            found = m.group(1).strip("'\"").rstrip("/") or "/"
    return found


def contract_kind(directory: Path) -> tuple[str, str]:
    """("Model", "/model") or ("Dataset", "/dataset") from DIR's Dockerfile; ValidationError otherwise."""
    dockerfile = directory / "Dockerfile"
    if not dockerfile.is_file():
        raise ValidationError([("DIR", f"{directory} has no Dockerfile")], hint=CONTRACT_HINT)
    workdir = dockerfile_workdir(dockerfile.read_text(encoding="utf-8", errors="replace"))
    if workdir not in KIND_BY_WORKDIR:
        raise ValidationError([("DIR", f"{dockerfile}: WORKDIR is {workdir or 'not set'}, so it is neither a model "
                                       "(/model) nor a dataset (/dataset) image")], hint=CONTRACT_HINT)
    return KIND_BY_WORKDIR[workdir], workdir


def name_for(directory: Path) -> str:
    """A DNS-1123 label from the directory's name: `My Model_v2` -> `my-model-v2`."""
    name = re.sub(r"[^a-z0-9]+", "-", directory.resolve().name.lower()).strip("-")[:63].strip("-")
    if not name:
        raise click.UsageError(f"cannot make an object name from {str(directory)!r}: give one with --name")
    return name


@dataclass
class Target:
    kind: str        # Model or Dataset
    namespace: str
    name: str
    workdir: str     # /model or /dataset


def manifests(t: Target, directory: Path, filename: str, suspend: bool = False) -> list[dict[str, Any]]:
    meta = {"name": t.name, "namespace": t.namespace, "labels": {LABEL: t.name}}
    source = {"dir": str(directory.resolve())}
    spec: dict[str, Any] = {"source": source} if t.kind == "Model" else {"filename": filename, "source": source}
    ref = "modelName" if t.kind == "Model" else "datasetName"
    return [{"apiVersion": "substratus.ai/v1", "kind": t.kind, "metadata": meta, "spec": spec},
            notebook_manifest(t, ref, suspend)]


def notebook_manifest(t: Target, ref: str, suspend: bool) -> dict[str, Any]:
    return {"apiVersion": "substratus.ai/v1", "kind": "Notebook",
            "metadata": {"name": t.name, "namespace": t.namespace, "labels": {LABEL: t.name}},
            "spec": {ref: t.name, "suspend": suspend}}


# ---- Ctrl-C: finish the round, then stop ---------------------------------------------------------

class StopSignal:
    """The first Ctrl-C (or SIGTERM) asks to stop after the current round; a second one interrupts at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.saved: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        err("\nstopping: a last sync, then the notebook is suspended (Ctrl-C again to quit at once)")

    def __enter__(self) -> "StopSignal":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


# ---- the command --------------------------------------------------------------------------------

@click.command()
@click.argument("directory", metavar="[DIR]", default=".",
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", help="Name of the Model/Dataset and the Notebook (default: DIR's name, as a DNS label).")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--filename", default="data.jsonl", show_default=True, help="A dataset's spec.filename.")
@click.option("--no-open", is_flag=True, help="Do not open the notebook in a browser.")
@click.option("--no-sync", is_flag=True, help="Start the notebook and return; no file sync, nothing suspended.")
@click.option("--exclude", multiple=True, metavar="PATTERN",
              help="Also keep these paths out of the sync (.gitignore syntax; repeatable).")
@click.option("--interval", type=click.FloatRange(min=0.2), default=1.0, show_default=True,
              help="Seconds between sync rounds.")
@click.option("--max-file-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="MiB; bigger files are not synced (and named once).")
@click.option("--timeout", type=click.FloatRange(min=1), default=1800, show_default=True,
              help="Seconds to wait for the build and the notebook to start.")
def notebook(directory: Path, name: Optional[str], namespace: str, filename: str, no_open: bool, no_sync: bool,
             exclude: tuple[str, ...], interval: float, max_file_size: int, timeout: float) -> None:
    """Build DIR (default .) as a model or dataset image, open a notebook on it, and sync files both ways.

    A file saved in the notebook appears in DIR, a file edited in DIR appears
    in the notebook, within a couple of seconds. If both changed, the newer
    wins and the other is kept beside it (name.conflict-<time>.ext).
    .gitignore patterns, --exclude, and defaults (.git/, .ipynb_checkpoints/,
    saved/, trained/, logs/ ...) are not synced. Ctrl-C syncs once more,
    suspends the notebook and leaves DIR complete.

    \b
    Examples:
      sub notebook                      # the current directory
      sub notebook examples/models/tiny-gpt --no-open
    """
    require_local("notebook")
    kind, workdir = contract_kind(directory)
    t = Target(kind, namespace, name or name_for(directory), workdir)
    c = Client(home_dir())
    started = start(c, t, directory, filename, timeout)
    url = str(started.get("status", {}).get("url") or "")
    if no_sync:
        show_url(url, no_open)
        return
    excludes = lambda: Excludes.for_dir(directory, exclude)  # noqa: E731 - re-read: .gitignore may change
    local = LocalDir(directory, excludes, max_size=max_file_size * 1024 * 1024)
    Session(c, t, local, excludes, max_file_size * 1024 * 1024).run(url, no_open, interval, directory)


def start(c: Client, t: Target, directory: Path, filename: str, timeout: float) -> dict[str, Any]:
    """Apply the image object and its notebook, and wait until the notebook runs (Ctrl-C suspends it)."""
    docs = manifests(t, directory, filename)
    for r in c.apply(docs):
        err(f"{r['kind'].lower()}/{r['name']} {r['result']}")
    keys = {ObjectKey(t.kind, t.namespace, t.name), ObjectKey("Notebook", t.namespace, t.name)}
    from substratus.cli.main import progress_view, report_failure

    try:
        verdict = wait_for(c.watch(timeout=timeout), keys, timeout, view=progress_view(keys))
    except KeyboardInterrupt:
        suspend(c, t)
        raise
    if verdict.failed or verdict.pending:
        for o in verdict.failed or verdict.pending:
            report_failure(o, "failed" if verdict.failed else "not ready")
        sys.exit(1)
    return c.get("Notebook", t.namespace, t.name)


def suspend(c: Client, t: Target) -> None:
    ref = "modelName" if t.kind == "Model" else "datasetName"
    c.apply([notebook_manifest(t, ref, suspend=True)])
    err(f"notebook/{t.name} suspended (run `sub notebook` again to resume it)")


def show_url(url: str, no_open: bool) -> None:
    click.echo(url)
    if no_open:
        return
    # Without a display, webbrowser would start a text browser in this terminal: say so instead.
    if sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        import webbrowser

        if webbrowser.open(url):
            return
    err("open the URL above in your browser")


class Session:
    """The sync loop: rounds every `interval` until asked to stop, following the notebook's container."""

    def __init__(self, c: Client, t: Target, local: LocalDir, excludes: Any, max_size: int) -> None:
        self.c, self.t, self.local, self.excludes, self.max_size = c, t, local, excludes, max_size
        self.container_id = ""
        self.syncer: Optional[Syncer] = None
        self.warned: set[str] = set()
        self.waiting_said = False

    def runtime(self) -> Any:
        from substratus.runtimes.engine import EngineRuntime

        engine = (self.c.healthy() or {}).get("engine") or os.environ.get("SUBSTRATUS_ENGINE") or "podman"
        return EngineRuntime(str(engine))

    def attach(self) -> bool:
        """Find the notebook's running container; a new one (restarted, rolled) starts a fresh sync."""
        d = self.c.describe("Notebook", self.t.namespace, self.t.name)
        running = [x for x in d.get("containers", []) if x.get("status") == "running"]
        if not running:
            if not self.waiting_said:
                err(f"notebook not running ({ready_condition(d).get('reason', 'Pending')}); sync waits for it")
                self.waiting_said = True
            self.syncer = None
            return False
        rt = self.runtime()
        state = rt.container(running[0]["name"])
        if state is None:
            return False
        if state.id != self.container_id:
            info = rt.image_info(state.image)
            workdir = (info.workdir if info and info.workdir else "") or self.t.workdir
            remote = ContainerDir(rt, state.name, workdir, self.excludes, max_size=self.max_size)
            self.syncer, self.container_id, self.waiting_said = Syncer(self.local, remote), state.id, False
        return True

    def sync_once(self) -> None:
        if self.syncer is None and not self.attach():
            return
        assert self.syncer is not None
        syncer, report = self.syncer, self.syncer.round()
        stamp = time.strftime("%H:%M:%S")
        for line in report.lines:
            err(f"[{stamp}] {line}")
        for side in (syncer.local, syncer.remote):
            for path in sorted(side.too_big - self.warned):
                err(f"not synced: {path} in {side.label} is bigger than {self.max_size // (1024 * 1024)} MiB "
                    "(--max-file-size)")
                self.warned.add(path)
            for path, why in sorted(side.refused.items()):
                if path not in self.warned:  # the notebook side is untrusted: say what it tried, once
                    err(f"refused: {path!r} from {side.label}: {why}; it is never synced")
                    self.warned.add(path)
        if report.error:
            self.syncer = None  # the container may have been replaced or stopped: look for it again next round

    def run(self, url: str, no_open: bool, interval: float, directory: Path) -> None:
        with StopSignal() as stop:
            self.sync_once()
            show_url(url, no_open)
            err(f"syncing {directory} <-> notebook:{self.t.workdir} every {interval:g}s; Ctrl-C to stop")
            while not stop.event.wait(interval):
                self.sync_once()
            self.sync_once()  # the last round: DIR gets what the notebook saved since
            suspend(self.c, self.t)
        err(f"{directory} is up to date")
        sys.exit(130)
