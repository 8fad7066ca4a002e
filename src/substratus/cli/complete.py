"""Shell completion of kinds and object names (`sub completion bash|zsh|fish` prints the script).

The shell runs `sub` with `_SUB_COMPLETE` set for every Tab; click calls these
functions. Names come from the control plane when one is running, and never
start one: without it, completion offers nothing, at once. Any error is
swallowed: a completion must never print a traceback into a prompt.
"""

from __future__ import annotations

from typing import Any

import click

from substratus.resources.kinds import canonical_kind

KIND_WORDS = ["dataset", "datasets", "model", "models", "server", "servers", "modelserver", "modelservers",
              "notebook", "notebooks"]


def kinds(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    return [w for w in KIND_WORDS if w.startswith(incomplete.lower())]


def names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Names of objects of the KIND typed before, from the running control plane."""
    try:
        kind = canonical_kind(str(ctx.params.get("kind") or ""))
        return [n for n in object_names(kind, ctx.params.get("namespace")) if n.startswith(incomplete)]
    except Exception:  # noqa: BLE001 - completion stays silent whatever went wrong
        return []


def object_names(kind: str, namespace: Any) -> list[str]:
    from substratus.cli.client import Client, home_dir

    client = Client(home_dir())
    if not client.running():
        return []
    items = client.list(kind, str(namespace) if namespace else None)
    return sorted({o["metadata"]["name"] for o in items})
