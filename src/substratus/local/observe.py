"""Seeing the world: caches kept current by engine events, and per-object snapshots.

The engine is the source of truth for what runs. `ContainerCache` lists this
instance's containers once, then follows `events()` (re-inspecting a
container when it starts, dies or goes), so a reconcile pass reads memory,
not the engine. `ImageCache` knows every local image (tag -> id) and is
re-listed after an image event it did not cause. Both are relisted when the
event stream breaks, as an informer resyncs.

`Observer.snapshot` gathers what one object's planner needs: its containers,
the images, its run directories' success markers and progress files, and
readiness probes of its running servers and notebooks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path, PurePath
from typing import Optional

from substratus import contract
from substratus.build import naming
from substratus.reconcile.layout import Layout
from substratus.reconcile.plan import Snapshot
from substratus.reconcile.progress import job_progress
from substratus.resources.objectkey import ObjectKey
from substratus.runtimes.base import MANAGED, ContainerState, EngineEvent, Runtime

log = logging.getLogger("substratus.observe")
Prober = Callable[[str, int], bool]      # (role, host port) -> answered
TAIL_TTL = 2.0  # seconds a non-answering server's log tail is reused while the container is unchanged
OWN_REPO = naming.IMAGE_REPO + "/"  # our images are named by content: their id never changes under a tag
CONTAINER_ROLES = frozenset({"load", "train", "server", "notebook"})  # what the planners run


def owner_of(labels: dict[str, str]) -> Optional[ObjectKey]:
    kind, ns, name = (labels.get(naming.label(k)) for k in ("kind", "namespace", "name"))
    return ObjectKey(kind, ns, name) if kind and ns and name else None


class ContainerCache:
    """This instance's containers by owner, kept current from engine events."""

    def __init__(self, runtime: Runtime, instance: str) -> None:
        self.runtime = runtime
        self.selector = {MANAGED: "true", naming.label("instance"): instance}
        self._lock = threading.Lock()
        self._by_owner: dict[ObjectKey, dict[str, ContainerState]] = defaultdict(dict)

    def relist(self) -> set[ObjectKey]:
        """Read every container again; returns the owners seen (before and now)."""
        fresh: dict[ObjectKey, dict[str, ContainerState]] = defaultdict(dict)
        for c in self.runtime.containers(self.selector):
            owner = owner_of(c.labels)
            if owner and self.mine(c.labels):
                fresh[owner][c.name] = c
        with self._lock:
            touched = set(self._by_owner) | set(fresh)
            self._by_owner = fresh
        return touched

    def mine(self, labels: dict[str, str]) -> bool:
        """A container this control plane started: every label of its selector (engines OR several
        label filters on events, so another control plane's containers come through) and one of the
        roles it runs. A container inherits its image's labels, and our images carry the owner's, so
        a container someone runs by hand from one of them (role "source" or "trained"), or a contract
        probe (role "once"), matches the selector too: neither is ever planned for or removed."""
        return (all(labels.get(k) == v for k, v in self.selector.items())
                and labels.get(naming.label("role")) in CONTAINER_ROLES)

    def on_event(self, event: EngineEvent) -> Optional[ObjectKey]:
        """Update from one container event; returns the owner to wake (None for others' containers).

        The usual steps of a container we started are read from the event itself: it was recorded
        when `run` returned (or by its create event), a start marks it running, a died event carries
        the exit code. Anything else (a stop, a restart, a container nobody recorded) is inspected."""
        if not self.mine(event.labels):
            return None
        owner = owner_of(event.labels)
        if owner is None or event.action in ("attach", "init", "cleanup", "exec_died", "exec"):
            return owner
        if event.action == "remove":
            self.drop(owner, event.name, event.id)
            return owner
        known = self.of(owner).get(event.name)
        same = known is not None and (not known.id or not event.id or known.id.startswith(event.id)
                                      or event.id.startswith(known.id))
        if event.action == "create" and known is None:
            self.put(owner, ContainerState(name=event.name, id=event.id, image=event.image,
                                           labels=dict(event.labels), running=False, exit_code=None,
                                           status="created"))
            return owner
        if known is not None and same and event.action in ("create", "start"):
            if event.action == "start" and not known.running:
                self.put(owner, replace(known, id=known.id or event.id, running=True, status="running"))
            return owner
        if known is not None and same and event.action == "died" and event.exit_code is not None:
            self.put(owner, replace(known, id=known.id or event.id, running=False, exit_code=event.exit_code,
                                    status="exited"))
            return owner
        state = self.runtime.container(event.name)
        if state is None:
            self.drop(owner, event.name, event.id)
        else:
            self.put(owner, state)
        return owner

    def put(self, owner: ObjectKey, state: ContainerState) -> None:
        """Record what was seen, unless something newer about the same container is known already: the
        executor's look after `run` and the event thread's looks race, and a container only moves
        forward (created -> running -> exited)."""
        with self._lock:
            known = self._by_owner[owner].get(state.name)
            if known is not None and known.id == state.id and _phase(known) > _phase(state):
                return
            self._by_owner[owner][state.name] = state

    def drop(self, owner: ObjectKey, name: str, container_id: str = "") -> None:
        """Forget a removed container; a late remove event of an older container of the same name
        (its id differs) leaves the new one alone."""
        with self._lock:
            known = self._by_owner[owner].get(name)
            if known is not None and (not container_id or not known.id or known.id.startswith(container_id)
                                      or container_id.startswith(known.id)):
                del self._by_owner[owner][name]

    def of(self, owner: ObjectKey) -> dict[str, ContainerState]:
        with self._lock:
            return dict(self._by_owner.get(owner, {}))

    def owners(self) -> set[ObjectKey]:
        with self._lock:
            return {k for k, v in self._by_owner.items() if v}


class ImageCache:
    """Which images exist (ref -> id), asked about one ref at a time and remembered.

    A pass asks only about the images its planner may need (`plan.wanted_images`): listing every
    image of a busy shared engine takes seconds. Answers are kept: a present image until an event
    says images went away, an absent one until something is built or tagged. This control plane's
    own builds record their result directly (`added`, inside `building`), and their own image
    events do not make it forget what it knows.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()
        self._known: dict[str, Optional[str]] = {}
        self._own_ids: dict[str, None] = {}  # ids of images we built (the latest 256), in order
        self._building = 0                   # our builds running now
        self._held: list[str] = []           # image events seen meanwhile, not yet known to be ours

    def lookup(self, refs: list[str]) -> dict[str, str]:
        with self._lock:
            unknown = [r for r in dict.fromkeys(refs) if r not in self._known]
        if len(unknown) > 1:  # one engine process each: ask side by side
            with ThreadPoolExecutor(min(len(unknown), 4)) as pool:
                found = dict(zip(unknown, pool.map(self.runtime.image_info, unknown)))
        else:
            found = {r: self.runtime.image_info(r) for r in unknown}
        with self._lock:
            for ref, info in found.items():
                self._known[ref] = info.id if info else None
            return {r: i for r in refs if (i := self._known.get(r))}

    def id_of(self, ref: str) -> Optional[str]:
        return self.lookup([ref]).get(ref)

    def added(self, ref: str, image_id: Optional[str] = None) -> Optional[str]:
        """An image we built ourselves (its id, when the build said it); returns its id (None: unknown)."""
        if image_id is None:
            info = self.runtime.image_info(ref)
            image_id = info.id if info else None
        with self._lock:
            self._known[ref] = image_id
            if image_id:
                self._own_ids[image_id] = None
                while len(self._own_ids) > 256:
                    del self._own_ids[next(iter(self._own_ids))]
        return image_id

    @contextlib.contextmanager
    def building(self) -> Iterator[None]:
        """Around one of our builds. Its own image event may arrive before the build says which image it
        made: an event that would forget the absent images is held until our builds end, and dropped if
        it was one of them (the next stage then need not ask about its images again)."""
        with self._lock:
            self._building += 1
        try:
            yield
        finally:
            with self._lock:
                self._building -= 1
                held = [n for n in self._held if n not in self._own_ids and self._known.get(n) is None]
                self._held = held if self._building else []
                if held and not self._building:
                    self._forget_absent()

    def on_event(self, action: str, name: str) -> bool:
        """Update after an image event; True when images may have gone (their users should look again)."""
        with self._lock:
            if action in ("remove", "untag", "delete", "prune"):
                if ":" in name and not name.startswith("sha256:"):
                    self._known.pop(name, None)
                else:  # named by id: any present image may be the one
                    self._known = {r: i for r, i in self._known.items() if i is None}
                return True
            # something was built or tagged: absent refs may exist now, and a base image may have moved
            ours = name.removeprefix("sha256:") in self._own_ids or (":" in name and self._known.get(name) and
                                                                     name.startswith(OWN_REPO))
            if ours:
                return False
            if self._building:
                self._held.append(name.removeprefix("sha256:"))
                return False
            self._forget_absent()
        return False

    def _forget_absent(self) -> None:
        """Absent refs may exist now, and a base image may have moved (lock held)."""
        self._known = {r: i for r, i in self._known.items() if i is not None and r.startswith(OWN_REPO)}

    def invalidate(self) -> None:
        with self._lock:
            self._known.clear()


class Observer:
    def __init__(self, runtime: Runtime, layout: Layout, prober: Prober) -> None:
        self.runtime, self.layout, self.prober = runtime, layout, prober
        self.containers = ContainerCache(runtime, layout.instance)
        self.images = ImageCache(runtime)
        # container name -> (what it was, when read, its tail); one entry per server/notebook name
        self._tails: dict[str, tuple[tuple[str, bool, Optional[int]], float, str]] = {}

    def snapshot(self, key: ObjectKey, now: float, in_flight: frozenset[str], images: list[str]) -> Snapshot:
        kind, ns, name = key
        containers = self.containers.of(key)
        probes, tails = self.probe({n: c for n, c in containers.items() if f"remove:{n}" not in in_flight}, now)
        object_dir = self.layout.object_dir(kind, ns, name)
        return Snapshot(now=now, images=self.images.lookup(images), containers=containers,
                        succeeded=succeeded_runs(object_dir), in_flight=in_flight, probes=probes,
                        log_tails=tails, progress=job_progress(containers.values(), object_dir, read_tail))

    def probe(self, containers: dict[str, ContainerState],
              now: float = 0.0) -> tuple[dict[str, bool], dict[str, str]]:
        """Probe running servers and notebooks; the log tail of each that does not answer (for the
        messages that quote it). A starting server is probed every 100 ms: its tail is read again
        only after TAIL_TTL seconds or when the container changed (it exited, it is another one),
        not on every probe, where each read is an engine process."""
        probes: dict[str, bool] = {}
        tails: dict[str, str] = {}
        for cname, c in containers.items():
            role = c.labels.get(naming.label("role"), "")
            if role not in ("server", "notebook"):
                continue
            port = c.ports.get(contract.PORTS[role])
            if c.running and port:
                probes[cname] = self.prober(role, port)
            if not probes.get(cname):
                seen = (c.id, c.running, c.exit_code)
                cached = self._tails.get(cname)
                if cached is None or cached[0] != seen or now - cached[1] >= TAIL_TTL or now < cached[1]:
                    cached = (seen, now, self.log_tail(cname))
                    self._tails[cname] = cached
                tails[cname] = cached[2]
        return probes, tails

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join(self.runtime.logs(name, tail=lines))
        except Exception as err:  # noqa: BLE001 - a tail is a courtesy; never fail a pass for it
            return f"(could not read the container's log: {err})"


def _phase(c: ContainerState) -> int:
    return 2 if (not c.running and c.exit_code is not None) else 1 if c.running else 0


def succeeded_runs(object_dir: Path) -> frozenset[str]:
    """Run directories of one object that hold the `.succeeded` marker the executor writes."""
    try:
        entries = list(os.scandir(object_dir))
    except OSError:
        return frozenset()
    return frozenset(e.path for e in entries
                     if e.is_dir(follow_symlinks=False) and os.path.isfile(os.path.join(e.path, ".succeeded")))


def read_tail(path: PurePath, limit: int) -> str:
    """At most the last `limit` bytes of a regular file, never following a link a container planted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        st = os.fstat(fd)
        if not (st.st_mode & 0o170000 == 0o100000):  # regular files only
            return ""
        start = max(0, st.st_size - limit)
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, limit)
    finally:
        os.close(fd)
    text = data.decode("utf-8", errors="replace")
    return text.split("\n", 1)[1] if start and "\n" in text else text
