"""Desired state and reported status, in SQLite under $SUBSTRATUS_HOME.

What runs is not stored here: the container engine is the source of truth for
that (containers carry labels). This holds what people asked for (spec), what
we told them (status), and `memo`: small facts the planners need across passes
(the resolved source revision, failures already reported, the server's port).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    generation INTEGER NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL, memo TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
"""


@dataclass
class Record:
    kind: str
    namespace: str
    name: str
    generation: int
    body: dict[str, Any]          # apiVersion, kind, metadata, spec (wire form)
    status: dict[str, Any]
    memo: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    def document(self) -> dict[str, Any]:
        meta = {**self.body.get("metadata", {}), "generation": self.generation}
        return {**self.body, "metadata": meta, "status": self.status}


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _row(self, row: tuple[Any, ...]) -> Record:
        return Record(kind=row[0], namespace=row[1], name=row[2], generation=row[3], body=json.loads(row[4]),
                      status=json.loads(row[5]), memo=json.loads(row[6]), created_at=row[7], updated_at=row[8])

    def get(self, kind: str, namespace: str, name: str) -> Optional[Record]:
        with self._lock:
            row = self._db.execute("SELECT * FROM objects WHERE kind=? AND namespace=? AND name=?",
                                   (kind, namespace, name)).fetchone()
        return self._row(row) if row else None

    def records(self, kind: Optional[str] = None, namespace: Optional[str] = None) -> list[Record]:
        q, args = "SELECT * FROM objects WHERE 1=1", list[str]()
        if kind:
            q, args = q + " AND kind=?", args + [kind]
        if namespace:
            q, args = q + " AND namespace=?", args + [namespace]
        with self._lock:
            rows = self._db.execute(q + " ORDER BY kind, namespace, name", args).fetchall()
        return [self._row(r) for r in rows]

    def put(self, rec: Record, now: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO objects VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(kind, namespace, name) DO UPDATE SET "
                "generation=excluded.generation, body=excluded.body, status=excluded.status, memo=excluded.memo, "
                "updated_at=excluded.updated_at",
                (rec.kind, rec.namespace, rec.name, rec.generation, json.dumps(rec.body), json.dumps(rec.status),
                 json.dumps(rec.memo), rec.created_at or now, now))

    def put_many(self, recs: list[Record], now: str) -> None:
        """All or nothing: an apply of several objects never stores half of them."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for rec in recs:
                    self.put(rec, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def update_status(self, key: tuple[str, str, str], generation: int, status: dict[str, Any],
                      memo: dict[str, Any], now: str) -> bool:
        """Write status + memo only if the object is still at `generation` (no lost updates)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE objects SET status=?, memo=?, updated_at=? WHERE kind=? AND namespace=? AND name=? "
                "AND generation=?", (json.dumps(status), json.dumps(memo), now, *key, generation))
        return cur.rowcount == 1

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM objects WHERE kind=? AND namespace=? AND name=?",
                                   (kind, namespace, name))
        return cur.rowcount == 1
