"""`sub get -w`: the current objects, then every change as it happens, until Ctrl-C (exit 130).

Built on `GET /api/v1/watch`: the first events are the objects as they are
(each ADDED), a BOOKMARK ends that list, then each change follows. A broken
or ended stream is resumed from the last resourceVersion seen; one that is
too old (410) starts over with a fresh list, as kubectl does. Output:
table rows (the header once, deleted objects with reason `Deleted`), one
JSON object a line with `-o json`, or YAML documents with `-o yaml`.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any, Optional

import click

from substratus.cli import output
from substratus.cli.backend import Backend
from substratus.errors import ControlPlaneError

MIN_WIDTHS = [11, 20, 5, 17, 8, 24, 5]  # ModelServer, a name, READY, WaitingForDataset, PROGRESS, ...
Printer = Callable[[str, dict[str, Any]], None]


class TablePrinter:
    """Rows under one header; the initial list is sized together, later rows use the same widths."""

    def __init__(self, echo: Callable[[str], None] = click.echo) -> None:
        self.echo = echo
        self.widths: Optional[list[int]] = None
        self.pending: list[tuple[str, ...]] = []

    def add(self, kind: str, obj: dict[str, Any]) -> None:
        r = output.row(obj, "Deleted" if kind == "DELETED" else "")
        if self.widths is None:
            self.pending.append(r)
        else:
            self.echo(output.format_rows([r], self.widths)[0])

    def synced(self) -> None:
        """The initial list is complete: print it with the header."""
        if self.widths is not None:
            return
        rows = [output.HEADER, *self.pending]
        self.widths = [max(w, m) for w, m in zip(output.widths_of(rows), MIN_WIDTHS)]
        for line in output.format_rows(rows, self.widths):
            self.echo(line)
        self.pending = []


def serialiser(fmt: str, with_events: bool) -> Callable[[str, dict[str, Any]], str]:
    def one(kind: str, obj: dict[str, Any]) -> str:
        data = {"type": kind, "object": obj} if with_events else obj
        if fmt == "json":
            return json.dumps(data, separators=(",", ":"))
        return "---\n" + output.dump(data, "yaml")
    return one


class Watch:
    """Prints watch events and remembers where to resume (`since`: None means list again)."""

    def __init__(self, name: Optional[str], fmt: str, with_events: bool) -> None:
        self.name = name
        self.table = TablePrinter() if fmt == "table" else None
        self.render = serialiser(fmt, with_events)
        self.since: Optional[str] = None

    def follow(self, events: Iterator[dict[str, Any]]) -> None:
        for event in events:
            kind = event.get("type", "")
            if kind == "BOOKMARK":
                self.since = str(event.get("resourceVersion") or self.since or "")
                if self.table is not None:
                    self.table.synced()
                continue
            if kind == "ERROR":
                self.since = None  # too far behind: list again
                return
            obj = event.get("object") or {}
            self.since = str(obj.get("metadata", {}).get("resourceVersion") or self.since or "")
            if self.name and obj.get("metadata", {}).get("name") != self.name:
                continue
            if self.table is not None:
                self.table.add(kind, obj)
            else:
                click.echo(self.render(kind, obj))


def watch_objects(c: Backend, kind: Optional[str], namespace: Optional[str], name: Optional[str], selector: str,
                  fmt: str, with_events: bool = False) -> None:
    """Print the objects and their changes until interrupted (KeyboardInterrupt propagates)."""
    w = Watch(name, fmt, with_events)
    while True:
        try:
            w.follow(c.watch_selected(kind, namespace, selector, w.since))
        except (OSError, http.client.HTTPException):
            pass  # the stream broke: resume below if the control plane still answers
        if not c.running():  # resume only against the same control plane: never start one behind `sub down`
            raise ControlPlaneError("the control plane stopped; the watch ended",
                                    hint="start it with `sub up`, then watch again")
