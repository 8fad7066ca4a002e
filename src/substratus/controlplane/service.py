"""What the API can ask of the control plane: apply, get, list, delete, logs.

`apply` is all-or-nothing: every object is validated, every reference
checked and every source fetched before anything is stored, so a bad manifest
changes nothing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import Any, Optional

from substratus.build import baseimages, naming
from substratus.controlplane import logfiles
from substratus.controlplane.layout import Layout
from substratus.controlplane.reconciler import Reconciler, utcnow
from substratus.controlplane.store import Record, Store
from substratus.errors import NotFoundError, SourceError, ValidationError
from substratus.resources.schema import Dataset, Model, ModelServer, Notebook, Resource
from substratus.runtimes.base import ContainerState, Runtime
from substratus.sources import ResolvedSource, git, local


CONTAINER_TAIL_LINES = 5000  # of a container's output: its end, not all of it


class ControlPlane:
    def __init__(self, store: Store, runtime: Runtime, layout: Layout, reconciler: Reconciler) -> None:
        self.store, self.runtime, self.layout, self.reconciler = store, runtime, layout, reconciler
        self._apply_lock = threading.Lock()

    # -- apply --------------------------------------------------------------------------------
    def apply(self, objects: list[Resource]) -> list[dict[str, Any]]:
        with self._apply_lock:
            self.check_references(objects)
            sources = {obj.key: self.resolve_source(obj) for obj in objects}
            now = utcnow()
            records, results = [], []
            for obj in objects:
                rec, result = self.next_record(obj, sources[obj.key])
                current = rec or self.store.get(*obj.key)
                results.append({"kind": obj.kind, "namespace": obj.namespace, "name": obj.name, "result": result,
                                "generation": current.generation if current else 0})
                if rec is not None:
                    records.append(rec)
            self.store.put_many(records, now)
        self.reconciler.wake.set()
        return results

    def next_record(self, obj: Resource, source: Optional[ResolvedSource]) -> tuple[Optional[Record], str]:
        body = obj.model_dump(by_alias=True, exclude_none=True, mode="json", exclude={"status": True, "metadata": {"generation"}})
        src_memo = ({"revision": source.revision, "context": str(source.context),
                     "description": source.description} if source else None)
        old = self.store.get(*obj.key)
        if old is None:
            memo = {"source": src_memo} if src_memo else {}
            return Record(obj.kind, obj.namespace, obj.name, 1, body, {"ready": False, "conditions": []}, memo), \
                "created"
        same_source = (old.memo.get("source") or {}).get("revision") == (src_memo or {}).get("revision")
        if old.body == body and same_source:
            if old.memo.get("failed"):  # re-applying is how a person says "try again"
                memo = {k: v for k, v in old.memo.items() if k != "failed"}
                return Record(**{**old.__dict__, "memo": memo, "generation": old.generation + 1}), "retried"
            return None, "unchanged"
        memo = {k: v for k, v in old.memo.items() if k not in ("failed", "source")}
        if src_memo:
            memo["source"] = src_memo
        return Record(**{**old.__dict__, "body": body, "memo": memo, "generation": old.generation + 1}), "configured"

    def check_references(self, objects: list[Resource]) -> None:
        batch = {o.key for o in objects}
        problems: list[tuple[str, str]] = []

        def need(kind: str, ns: str, name: Optional[str], field: str, obj: Resource) -> None:
            if name and (kind, ns, name) not in batch and self.store.get(kind, ns, name) is None:
                problems.append((f"{obj.ref}: {field}",
                                 f"{kind} {name!r} does not exist in namespace {ns!r}; apply it too (in the same "
                                 f"`sub apply`) or fix the name (see `sub get {kind.lower()}s`)"))

        for o in objects:
            if isinstance(o, Model):
                need("Model", o.namespace, o.spec.source.model_name, "spec.source.modelName", o)
                if o.spec.source.model_name == o.name:
                    problems.append((f"{o.ref}: spec.source.modelName", "a model cannot be based on itself"))
                if o.spec.training:
                    need("Dataset", o.namespace, o.spec.training.dataset_name, "spec.training.datasetName", o)
            elif isinstance(o, ModelServer):
                need("Model", o.namespace, o.spec.model_name, "spec.modelName", o)
            elif isinstance(o, Notebook):
                need("Model", o.namespace, o.spec.model_name, "spec.modelName", o)
                need("Dataset", o.namespace, o.spec.dataset_name, "spec.datasetName", o)
        if problems:
            raise ValidationError(problems, hint="nothing was applied")

    def resolve_source(self, obj: Resource) -> Optional[ResolvedSource]:
        resolved = self._fetch_source(obj)
        if resolved is None:
            return None
        bases = baseimages.fingerprint(self.runtime, resolved.context)
        if not bases:
            return resolved
        return ResolvedSource(revision=naming.digest(resolved.revision, bases), context=resolved.context,
                              description=resolved.description)

    def _fetch_source(self, obj: Resource) -> Optional[ResolvedSource]:
        if not isinstance(obj, (Dataset, Model)):
            return None
        src = obj.spec.source
        try:
            if src.git is not None:
                url = git.normalise_url(src.git.url)
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
        return self.runtime.containers(naming.object_labels(kind, namespace, name, instance=self.layout.instance))

    # -- delete -------------------------------------------------------------------------------
    def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self.get(kind, namespace, name)
        removed = []
        with self.reconciler.lock((kind, namespace, name)):
            self.store.delete(kind, namespace, name)
            for c in self.runtime.containers(naming.object_labels(kind, namespace, name,
                                                                  instance=self.layout.instance)):
                self.runtime.remove(c.name)
                removed.append(c.name)
        self.reconciler.wake.set()
        return {"kind": kind, "namespace": namespace, "name": name, "result": "deleted", "containers": removed}

    # -- logs ---------------------------------------------------------------------------------
    def log_files(self, rec: Record) -> list[Path]:
        run_dir = (rec.memo.get("current") or {}).get("runDir")
        return logfiles.list_files(self.layout.object_dir(rec.kind, rec.namespace, rec.name),
                                   Path(run_dir) if run_dir else None)

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
