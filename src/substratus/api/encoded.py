"""Each object's JSON document, encoded once per version, for `GET /api/v1/objects`.

`sub get` of 1,000 objects must answer within 0.25 s, CLI start-up included;
encoding 1,000 documents on every list took ~15 ms of the daemon's time, and
most lists find most objects unchanged. A `Record` is immutable (a write
stores a new one), so an encoding stays valid for as long as the store still
holds that very record: the cache checks identity, never equality, and so
never serves an older version even when a write races a list. Store events
drop entries (`api.app.create_app` subscribes `forget`) so that deleted
objects are not kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from substratus.local.store import Event, Record
from substratus.resources.objectkey import ObjectKey


def encode(data: object) -> str:
    """Compact JSON, as every API answer is written."""
    return json.dumps(data, separators=(",", ":"))


class EncodedDocuments:
    def __init__(self) -> None:
        self._cache: dict[ObjectKey, tuple[Record, str]] = {}

    def forget(self, event: Event) -> None:
        """A store listener (runs under the store's lock: only a dict operation here)."""
        self._cache.pop(event.record.key, None)

    def one(self, rec: Record) -> str:
        hit = self._cache.get(rec.key)
        if hit is None or hit[0] is not rec:
            hit = (rec, encode(rec.document()))
            self._cache[rec.key] = hit
        return hit[1]

    def array(self, records: Iterable[Record]) -> str:
        """A JSON array of the documents, byte for byte what `encode([r.document() ...])` writes."""
        return "[" + ",".join(self.one(r) for r in records) + "]"

    def __len__(self) -> int:
        return len(self._cache)
