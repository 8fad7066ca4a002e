"""Garbage collection: what a long-lived control plane would otherwise pile up.

- Run directories (loaded data, training outputs, logs) of each object: the
  one its status points at, any a container still uses, and the `keep` most
  recent others are kept; older ones are removed.
- Images this instance built for its objects (their ids are in its ledger,
  `local.ledger`, or, built before the ledger, they carry its instance
  label: image names are shared by every control plane on one engine): those
  an object publishes or still uses, the latest verified ones in its state,
  and images any container runs on are kept; superseded ones are untagged.
- Source snapshots and checkouts under `sources/` that no object refers to and
  that are older than an hour (an apply in progress may have just made one).

The decisions are pure (`plan_gc`); `collect` observes and acts. Called by the
controller on a timer; nothing here runs during a reconcile pass.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from substratus.build import naming
from substratus.local.ledger import BuiltImages
from substratus.local.store import Record
from substratus.reconcile import state as states
from substratus.reconcile.layout import Layout
from substratus.resources.objectkey import ObjectKey
from substratus.runtimes.base import ContainerState, Runtime

log = logging.getLogger("substratus.gc")
SOURCE_GRACE = 3600.0


@dataclass(frozen=True)
class RunDir:
    path: Path
    mtime: float


@dataclass
class Garbage:
    run_dirs: list[Path] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)


def image_repo(ref: str) -> str:
    return ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref


def object_repos(rec: Record) -> set[str]:
    """The image repositories this instance tags for one object."""
    repos = {f"{naming.IMAGE_REPO}/{rec.kind.lower()}-{rec.namespace}-{rec.name}"}
    if rec.kind == "Model":
        repos.add(f"{naming.IMAGE_REPO}/model-{rec.namespace}-{rec.name}")
    return repos


def kept_images(records: list[Record], containers: list[ContainerState]) -> set[str]:
    keep = {c.image for c in containers}
    for rec in records:
        status: dict[str, Any] = rec.status
        keep.add(str(status.get("containerImage") or ""))
        lineage = status.get("lineage") or {}
        keep.add(str((lineage.get("baseModel") or {}).get("image") or ""))
        state = states.load(rec.kind, rec.state)
        if isinstance(state, states.BuildState):
            keep.update(state.verified)
    return keep - {""}


def plan_gc(records: list[Record], runs: dict[ObjectKey, list[RunDir]], images: dict[str, str],
            containers: list[ContainerState], sources: list[RunDir], now: float, keep: int) -> Garbage:
    """What may go, given what was observed. Pure. Objects still on their way (not ready at their
    current generation) are left alone: their newest run or image may not be published yet."""
    garbage = Garbage()
    settled = [r for r in records if r.status.get("ready") and r.status.get("observedGeneration") == r.generation]
    busy_runs = {(c.labels.get(naming.label("kind"), ""), c.labels.get(naming.label("namespace"), ""),
                  c.labels.get(naming.label("name"), ""), c.labels.get(naming.label("run"), "")) for c in containers}
    for rec in settled:
        current = str(rec.status.get("url") or "") + str(rec.status.get("containerImage") or "")
        ordered = sorted(runs.get(rec.key, []), key=lambda r: r.mtime, reverse=True)
        for i, run in enumerate(ordered):
            in_use = (*rec.key, run.path.name) in busy_runs or run.path.name in current
            if i >= keep and not in_use:
                garbage.run_dirs.append(run.path)
    unsettled = set().union(*(object_repos(r) for r in records if r not in settled)) if records else set()
    ours = set().union(*(object_repos(r) for r in settled)) - unsettled if settled else set()
    keep_refs = kept_images(records, containers)
    garbage.images = sorted(ref for ref in images if image_repo(ref) in ours and ref not in keep_refs)
    contexts = set()
    for rec in records:
        state = states.load(rec.kind, rec.state)
        if isinstance(state, states.BuildState) and state.source is not None:
            contexts.add(state.source.context)
    for src in sources:
        referenced = any(c == str(src.path) or c.startswith(str(src.path) + os.sep) for c in contexts)
        if not referenced and now - src.mtime > SOURCE_GRACE:
            garbage.sources.append(src.path)
    return garbage


def observe_runs(layout: Layout, records: list[Record]) -> dict[ObjectKey, list[RunDir]]:
    out: dict[ObjectKey, list[RunDir]] = {}
    for rec in records:
        d = layout.object_dir(rec.kind, rec.namespace, rec.name)
        out[rec.key] = [RunDir(Path(e.path), e.stat(follow_symlinks=False).st_mtime)
                        for e in _scandir(d) if e.is_dir(follow_symlinks=False)]
    return out


def observe_sources(layout: Layout) -> list[RunDir]:
    return [RunDir(Path(e.path), e.stat(follow_symlinks=False).st_mtime)
            for root in (layout.git_cache, layout.dir_cache) for e in _scandir(root)
            if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(path))
    except OSError:
        return []


def collect(layout: Layout, runtime: Runtime, records: list[Record], containers: list[ContainerState],
            keep: int) -> Garbage:
    """Observe, decide and remove; returns what was removed."""
    images = runtime.images()
    garbage = plan_gc(records, observe_runs(layout, records), images, containers,
                      observe_sources(layout), time.time(), keep)
    for path in garbage.run_dirs + garbage.sources:
        shutil.rmtree(path, ignore_errors=True)
    built = BuiltImages(layout.built_images)
    removed = False
    for ref in garbage.images:
        info = runtime.image_info(ref)  # only what this control plane built: names are shared on one engine
        if info is not None and (info.id in built or info.labels.get(naming.label("instance")) == layout.instance):
            removed = runtime.remove_image(ref) or removed
    built.forget_all_but(set((runtime.images() if removed else images).values()))
    if garbage.run_dirs or garbage.images or garbage.sources:
        log.info("garbage collected: %d run directories, %d images, %d source snapshots",
                 len(garbage.run_dirs), len(garbage.images), len(garbage.sources))
    return garbage
