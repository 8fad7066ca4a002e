"""Who refers to whom, and when that matters: the dependency index both backends keep.

Each backend feeds it every change it sees of an object (the local store's events; the operator's
watch events) and queues what it answers: the objects that refer to one whose published status
changed (a Dataset that became ready wakes the Models trained on it). What counts as published is
one rule, `published`: readiness and its reason, the image, the data and its digest, the compute
types, which generation the status is of, and the object's own generation (a re-applied object is
not current until its status catches up); an object that goes away changes it too. Our own status
writes that change none of these (a progress line, a transition time) wake no one.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Optional

from substratus.reconcile.conditions import ready_reason
from substratus.resources.objectkey import ObjectKey
from substratus.resources.references import references

View = Optional[tuple[Any, ...]]  # what dependents see of an object; None: gone, or going


def published(status: Mapping[str, Any], generation: Any, gone: bool = False) -> View:
    """What dependents of an object can see of it; a change of this wakes them."""
    if gone:
        return None
    compute = status.get("computeTypes")
    return (status.get("ready"), ready_reason(status), status.get("containerImage"), status.get("url"),
            status.get("digest"), tuple(compute) if isinstance(compute, list) else compute,
            status.get("observedGeneration"), generation)


class DependencyIndex:
    """References from specs (both directions, so each change costs its own references only) and what
    each object published last. Thread-safe: the local store calls it from whichever thread writes,
    the operator from its event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refers_to: dict[ObjectKey, set[ObjectKey]] = {}
        self._referred_by: dict[ObjectKey, set[ObjectKey]] = defaultdict(set)
        self._published: dict[ObjectKey, View] = {}

    def observe(self, key: ObjectKey, spec: Mapping[str, Any], status: Mapping[str, Any], generation: Any, *,
                deleting: bool = False, deleted: bool = False) -> list[ObjectKey]:
        """Record one change of `key`; returns its dependents to wake (none unless what it publishes changed).

        `deleting`: marked for deletion, still there (dependents see it gone); `deleted`: gone."""
        now = published(status, generation, gone=deleting or deleted)
        with self._lock:
            self._set_references(key, set() if deleted else references(key.kind, key.namespace, dict(spec)))
            changed = key not in self._published or self._published[key] != now
            if deleted:
                self._published.pop(key, None)
            else:
                self._published[key] = now
            return sorted(self._referred_by.get(key, ())) if changed else []

    def dependents(self, key: ObjectKey) -> list[ObjectKey]:
        """The objects whose specs name `key`."""
        with self._lock:
            return sorted(self._referred_by.get(key, ()))

    def _set_references(self, key: ObjectKey, targets: set[ObjectKey]) -> None:
        old = self._refers_to.pop(key, set())
        for target in old - targets:
            self._referred_by[target].discard(key)
            if not self._referred_by[target]:
                del self._referred_by[target]
        for target in targets - old:
            self._referred_by[target].add(key)
        if targets:
            self._refers_to[key] = targets
