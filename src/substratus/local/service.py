"""What the API asks of the control plane: apply, read, delete, logs.

`apply` validates references and resolves sources *before* anything is
stored (a bad manifest changes nothing), stores the whole batch at once, and
hands the keys to the controller's queue. Reads come from the store's memory.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from substratus.build import fromlines as baseimages
from substratus.build import naming
from substratus.errors import ConflictError, NotFoundError, SourceError, ValidationError
from substratus.local import logfiles
from substratus.local.controller import Controller
from substratus.local.store import Record, Store
from substratus.reconcile import state as states
from substratus.reconcile.core import check_references
from substratus.reconcile.layout import Layout
from substratus.reconcile.status import utcnow
from substratus.resources.manifest import parse_objects
from substratus.resources.objectkey import ObjectKey
from substratus.resources.schema import Dataset, Model, Resource
from substratus.runtimes.base import ContainerState, Runtime
from substratus.sources import ResolvedSource, git, local

MAX_OBJECTS = 10000  # per apply or delete request; the API's body limit (8 MiB) bounds it too
TOO_MANY_HINT = f"send at most {MAX_OBJECTS} objects in one request: split the manifests over several applies"
SYSTEM_META = {"generation", "resourceVersion", "uid", "creationTimestamp"}


CONTAINER_TAIL_LINES = 5000  # of a container's output: its end, not all of it


class ControlPlane:
    def __init__(self, store: Store, runtime: Runtime, layout: Layout, controller: Controller) -> None:
        self.store, self.runtime, self.layout, self.controller = store, runtime, layout, controller
        self._apply_lock = threading.Lock()
        self._fetch_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)

    # -- apply --------------------------------------------------------------------------------
    def apply_documents(self, documents: list[Any], *, dry_run: bool = False) -> list[dict[str, Any]]:
        """Apply manifests as a client sent them (decoded JSON): each parsed and checked, every problem
        of every document named together, nothing applied unless all are valid. The API's apply route
        and the daemon's first apply (handed over by the `sub` that starts it) both come here."""
        if len(documents) > MAX_OBJECTS:
            raise ValidationError([("objects", f"{len(documents)} objects in one request")],
                                  hint=TOO_MANY_HINT)
        return self.apply(parse_objects(documents), dry_run=dry_run)

    def apply(self, objects: list[Resource], *, dry_run: bool = False) -> list[dict[str, Any]]:
        with self._apply_lock:
            self.check_references(objects)
            sources = self.resolve_sources(objects)
            records, results = [], []
            for obj in objects:
                rec, result = self.next_record(obj, sources[obj.key])
                current = rec or self.store.get(*obj.key)
                results.append({"kind": obj.kind, "namespace": obj.namespace, "name": obj.name,
                                "result": result + (" (dry run)" if dry_run else ""),
                                "generation": current.generation if current else 0})
                if rec is not None:
                    records.append(rec)
            if not dry_run and records:
                self.store.put_many(records, utcnow())
                self.controller.queue.add_many([r.key for r in records])
        return results

    def next_record(self, obj: Resource, source: Optional[ResolvedSource]) -> tuple[Optional[Record], str]:
        body = obj.model_dump(by_alias=True, exclude_none=True, mode="json", exclude={"status": True})
        body["metadata"] = {k: v for k, v in body["metadata"].items() if k not in SYSTEM_META}
        old = self.store.get(*obj.key)
        src = source_record(source)
        if old is None:
            state = states.load(obj.kind, {})
            if src is not None and isinstance(state, states.BuildState):
                state = state.model_copy(update={"source": src})
            return Record(obj.kind, obj.namespace, obj.name, 1, body, {"ready": False, "conditions": []},
                          states.dump(state)), "created"
        if old.deleting:
            raise ConflictError(f"{obj.ref} is being deleted", hint=f"wait until `sub get {obj.kind.lower()} "
                                f"{obj.name}` says it is gone, then apply again")
        state = states.load(obj.kind, old.state)
        old_src = state.source if isinstance(state, states.BuildState) else None
        same_source = (old_src.revision if old_src else None) == (src.revision if src else None)
        if old.body == body and same_source:
            if not state.failures:
                return None, "unchanged"
            result = "retried"  # re-applying is how a person says "try again"
        else:
            result = "configured"
        update: dict[str, Any] = {"failures": {}}
        if isinstance(state, states.BuildState):
            update["source"] = src
        new_state = states.dump(state.model_copy(update=update))
        return replace(old, body=body, state=new_state, generation=old.generation + 1), result

    def check_references(self, objects: list[Resource]) -> None:
        check_references(objects, lambda key: self.store.get(*key) is not None)

    def resolve_sources(self, objects: list[Resource]) -> dict[tuple[str, str, str], Optional[ResolvedSource]]:
        """Every object's source, fetched side by side (git ls-remote/clone wait on I/O); all problems of
        all objects are reported together."""
        with ThreadPoolExecutor(max_workers=min(8, max(1, len(objects)))) as pool:
            futures = {obj.key: pool.submit(self.resolve_source, obj) for obj in objects}
        out: dict[tuple[str, str, str], Optional[ResolvedSource]] = {}
        problems: list[tuple[str, str]] = []
        hints: list[str] = []
        for key, fut in futures.items():
            try:
                out[key] = fut.result()
            except ValidationError as err:
                problems += err.problems
                hints.append(err.hint)
        if problems:
            raise ValidationError(problems, hint=next((h for h in hints if h), "nothing was applied"))
        return out

    def resolve_source(self, obj: Resource) -> Optional[ResolvedSource]:
        resolved = self._fetch_source(obj)
        if resolved is None:
            return None
        bases = baseimages.fingerprint_with(self.controller.observer.images.id_of, resolved.context)
        if not bases:
            return resolved
        return replace(resolved, revision=naming.digest(resolved.revision, bases))

    def _fetch_source(self, obj: Resource) -> Optional[ResolvedSource]:
        if not isinstance(obj, (Dataset, Model)):
            return None
        src = obj.spec.source
        try:
            if src.git is not None:
                url = git.normalise_url(src.git.url)
                with self._fetch_locks[url]:  # objects from one repository: one clone, the others reuse it
                    return git.fetch(url, src.git.branch, src.git.path, self.layout.git_cache)
            if src.dir is not None:
                return local.snapshot(src.dir, self.layout.dir_cache)
        except SourceError as err:
            raise ValidationError([(f"{obj.ref}: {err.field}" if err.field else obj.ref,
                                    err.message.split(": ", 1)[-1] if err.field else err.message)],
                                  hint=err.hint + "; nothing was applied" if err.hint else "nothing was applied") \
                from err
        return None

    # -- read ---------------------------------------------------------------------------------
    def get(self, kind: str, namespace: str, name: str) -> Record:
        rec = self.store.get(kind, namespace, name)
        if rec is None:
            raise NotFoundError(f"{kind} {name!r} not found in namespace {namespace!r}",
                                hint=f"list what exists with `sub get {kind.lower()}s`")
        return rec

    def records(self, kind: Optional[str], namespace: Optional[str]) -> list[Record]:
        return self.store.records(kind, namespace)

    def containers(self, kind: str, namespace: str, name: str) -> list[ContainerState]:
        return list(self.controller.observer.containers.of(ObjectKey(kind, namespace, name)).values())

    def secrets(self, rec: Record) -> dict[str, str]:
        """What `sub describe` may show its owner: a server's bearer token."""
        state = states.load(rec.kind, rec.state)
        if isinstance(state, states.ServerState) and state.token:
            return {"serverToken": state.token}
        return {}

    # -- delete -------------------------------------------------------------------------------
    def delete(self, keys: list[ObjectKey], *, wait: float = 60.0) -> list[dict[str, Any]]:
        """Delete objects (their containers are removed by the controller); waits until they are gone."""
        missing = [k for k in keys if self.store.get(*k) is None]
        if missing and len(missing) == len(keys) and len(keys) == 1:
            self.get(*keys[0])  # raises NotFoundError with the usual hint
        doomed = self.controller.delete([k for k in keys if k not in missing])
        self.wait_gone(list(doomed), wait)
        out = [{"kind": k[0], "namespace": k[1], "name": k[2], "result": "deleted", "containers": names}
               for k, names in doomed.items()]
        out += [{"kind": k[0], "namespace": k[1], "name": k[2], "result": "not found", "containers": []}
                for k in missing]
        return out

    def wait_gone(self, keys: list[ObjectKey], timeout: float) -> None:
        gone = threading.Event()
        pending = {k for k in keys if self.store.get(*k) is not None}

        def listener(event: Any) -> None:
            if event.type == "DELETED":
                pending.discard(event.record.key)
            if not pending:
                gone.set()

        unsubscribe = self.store.subscribe(listener)
        try:
            pending = {k for k in pending if self.store.get(*k) is not None}
            if pending:
                gone.wait(timeout)
        finally:
            unsubscribe()

    # -- logs ---------------------------------------------------------------------------------
    def current_run(self, rec: Record) -> Optional[Path]:
        """The object's most recent load/train run directory."""
        runs = [p for p in self.layout.object_dir(rec.kind, rec.namespace, rec.name).iterdir() if p.is_dir()] \
            if self.layout.object_dir(rec.kind, rec.namespace, rec.name).is_dir() else []
        return max(runs, key=lambda p: p.stat().st_mtime, default=None)

    def log_files(self, rec: Record) -> list[Path]:
        return logfiles.list_files(self.layout.object_dir(rec.kind, rec.namespace, rec.name),
                                   self.current_run(rec))

    def file_log_lines(self, rec: Record) -> list[str]:
        """Each log file's tail under a header (see `logfiles`: no links followed, bounded)."""
        root = self.layout.object_dir(rec.kind, rec.namespace, rec.name)
        out: list[str] = []
        for f in self.log_files(rec):
            out.append(f"==> {f.relative_to(self.layout.home)} <==")
            out += logfiles.read_tail(root, f)
        return out

    async def stream_logs(self, rec: Record, follow: bool) -> AsyncGenerator[str, None]:
        """`logs` for the HTTP API: the blocking parts run briefly on a thread; following a
        container holds none, and closing this iterator ends the engine's `logs` process."""
        for line in await asyncio.to_thread(self.file_log_lines, rec):
            yield line
        containers = await asyncio.to_thread(self.containers, rec.kind, rec.namespace, rec.name)
        for c in containers:
            yield f"==> container {c.name} ({c.status}) <=="
            live = follow and c.running and c is containers[-1]
            async with aclosing(self.runtime.stream_logs(c.name, tail=CONTAINER_TAIL_LINES, follow=live)) as lines:
                async for line in lines:
                    yield line


def source_record(source: Optional[ResolvedSource]) -> Optional[states.Source]:
    if source is None:
        return None
    return states.Source(revision=source.revision, context=str(source.context), description=source.description,
                         git_url=source.git_url, git_commit=source.git_commit, git_path=source.git_path,
                         dir=source.dir)

