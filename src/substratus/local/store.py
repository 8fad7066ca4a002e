"""Desired state, reported status and typed per-kind state, in SQLite under $SUBSTRATUS_HOME.

What runs is not stored here: the container engine is the source of truth for
that (containers carry labels). This holds what people asked for (`body`:
apiVersion, kind, metadata, spec), what we told them (`status`), and `state`:
the typed record of what the controller remembers for the object between
passes (`reconcile.state`), never read by other objects.

Every write bumps a global `resourceVersion` (as Kubernetes does) and is
published to subscribers: the controller's dependency wake-ups, `GET
/api/v1/watch`, `sub get -w` and the dashboard. All records are also held in
memory, so reads (`sub get` of 1,000 objects) never touch the disk; SQLite
(WAL) is the durable copy, written before a change is published.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Optional

from substratus.resources.objectkey import ObjectKey

EventType = Literal["ADDED", "MODIFIED", "DELETED"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    generation INTEGER NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL, state TEXT NOT NULL,
    uid TEXT NOT NULL, resource_version INTEGER NOT NULL, deleting INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
"""
COLUMNS = ("kind", "namespace", "name", "generation", "body", "status", "state", "uid", "resource_version",
           "deleting", "created_at", "updated_at")


@dataclass(frozen=True)
class Record:
    """One object as stored. Treat the dicts as read-only: writers build new records."""

    kind: str
    namespace: str
    name: str
    generation: int
    body: dict[str, Any]          # apiVersion, kind, metadata (name, namespace, labels), spec
    status: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    uid: str = ""
    resource_version: int = 0
    deleting: bool = False
    created_at: str = ""
    updated_at: str = ""

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.kind, self.namespace, self.name)

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.body.get("metadata", {}).get("labels") or {})

    def document(self) -> dict[str, Any]:
        meta = {**self.body.get("metadata", {}), "generation": self.generation, "uid": self.uid,
                "resourceVersion": str(self.resource_version), "creationTimestamp": self.created_at}
        if self.deleting:
            meta["deletionTimestamp"] = self.updated_at
        return {**self.body, "metadata": meta, "status": self.status}


@dataclass(frozen=True)
class Event:
    type: EventType
    record: Record

    @property
    def resource_version(self) -> int:
        return self.record.resource_version


Listener = Callable[[Event], None]


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a crash of this process
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        rows = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM objects").fetchall()
        self._records: dict[ObjectKey, Record] = {r.key: r for r in map(_row, rows)}
        self._version = max((r.resource_version for r in self._records.values()), default=0)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading ---------------------------------------------------------------------------------
    @property
    def resource_version(self) -> int:
        return self._version

    def get(self, kind: str, namespace: str, name: str) -> Optional[Record]:
        return self._records.get(ObjectKey(kind, namespace, name))

    def records(self, kind: Optional[str] = None, namespace: Optional[str] = None) -> list[Record]:
        with self._lock:
            found = [r for r in self._records.values()
                     if (not kind or r.kind == kind) and (not namespace or r.namespace == namespace)]
        return sorted(found, key=lambda r: r.key)

    def snapshot(self) -> tuple[int, list[Record]]:
        """Every record and the resourceVersion they are current at (a watch starts here)."""
        with self._lock:
            return self._version, sorted(self._records.values(), key=lambda r: r.key)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` after every committed change (under the store lock: it must not block)."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    # -- writing ---------------------------------------------------------------------------------
    def put_many(self, recs: Iterable[Record], now: str) -> list[Record]:
        """Create or replace several records, all or nothing; returns them as stored."""
        with self._lock:
            stored = []
            self._db.execute("BEGIN")
            try:
                for rec in recs:
                    old = self._records.get(rec.key)
                    self._version += 1
                    stored.append(replace(rec, uid=old.uid if old else (rec.uid or str(uuid.uuid4())),
                                          created_at=old.created_at if old else now, updated_at=now,
                                          resource_version=self._version))
                    self._write(stored[-1])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._version = max((r.resource_version for r in self._records.values()), default=0)
                raise
            for rec in stored:
                event: EventType = "MODIFIED" if rec.key in self._records else "ADDED"
                self._records[rec.key] = rec
                self._publish(Event(event, rec))
            return stored

    def update(self, key: ObjectKey, change: Callable[[Record], Optional[Record]], now: str) -> Optional[Record]:
        """Read-modify-write one record under the lock. `change` returns the new record, or None for
        no change. Returns the stored record (None when the object does not exist or did not change)."""
        with self._lock:
            old = self._records.get(key)
            if old is None:
                return None
            new = change(old)
            if new is None or (new.status == old.status and new.state == old.state and new.body == old.body
                               and new.deleting == old.deleting and new.generation == old.generation):
                return None
            self._version += 1
            new = replace(new, updated_at=now, resource_version=self._version, uid=old.uid,
                          created_at=old.created_at)
            self._write(new)
            self._records[key] = new
            self._publish(Event("MODIFIED", new))
            return new

    def update_many(self, keys: list[ObjectKey], change: Callable[[Record], Record], now: str) -> list[Record]:
        """Change several records in one transaction (e.g. mark 1,000 objects for deletion)."""
        with self._lock:
            new = [change(self._records[k]) for k in keys if k in self._records]
            if not new:
                return []
            return self.put_many(new, now)

    def delete_many(self, keys: Iterable[ObjectKey]) -> list[Record]:
        """Remove records for good (their containers are gone); returns those that existed."""
        with self._lock:
            gone = [self._records[k] for k in keys if k in self._records]
            if not gone:
                return []
            self._db.execute("BEGIN")
            try:
                self._db.executemany("DELETE FROM objects WHERE kind=? AND namespace=? AND name=?",
                                     [r.key for r in gone])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            out = []
            for rec in gone:
                del self._records[rec.key]
                self._version += 1
                out.append(replace(rec, resource_version=self._version))
                self._publish(Event("DELETED", out[-1]))
            return out

    def _write(self, rec: Record) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO objects ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            (rec.kind, rec.namespace, rec.name, rec.generation, json.dumps(rec.body), json.dumps(rec.status),
             json.dumps(rec.state), rec.uid, rec.resource_version, int(rec.deleting), rec.created_at,
             rec.updated_at))

    def _publish(self, event: Event) -> None:
        for listener in list(self._listeners):
            listener(event)


def _row(row: tuple[Any, ...]) -> Record:
    return Record(kind=row[0], namespace=row[1], name=row[2], generation=row[3], body=json.loads(row[4]),
                  status=json.loads(row[5]), state=json.loads(row[6]), uid=row[7], resource_version=row[8],
                  deleting=bool(row[9]), created_at=row[10], updated_at=row[11])
