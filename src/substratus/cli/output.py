"""Rendering objects for people (tables, describe) and for scripts (json, yaml)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import yaml

from substratus.resources.kinds import KIND_ORDER


def ready_condition(obj: dict[str, Any]) -> dict[str, Any]:
    conds = obj.get("status", {}).get("conditions", [])
    return next((c for c in conds if c.get("type") == "Ready"), {})


def age(ts: str) -> str:
    try:
        then = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return "-"
    s = int((datetime.now(timezone.utc) - then).total_seconds())
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def table(items: list[dict[str, Any]]) -> str:
    rows = [("KIND", "NAME", "READY", "REASON", "URL / IMAGE", "SINCE")]
    items = sorted(items, key=lambda o: (KIND_ORDER.index(o["kind"]) if o["kind"] in KIND_ORDER else 9,
                                         o["metadata"]["name"]))
    for o in items:
        st = o.get("status", {})
        cond = ready_condition(o)
        ns = o["metadata"].get("namespace", "default")
        name = o["metadata"]["name"] if ns == "default" else f"{ns}/{o['metadata']['name']}"
        rows.append((o["kind"], name, "yes" if st.get("ready") else "no", cond.get("reason", "Pending"),
                     st.get("url") or st.get("containerImage") or "-", age(cond.get("lastTransitionTime", ""))))
    if len(rows) == 1:
        return "No objects found."
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False).rstrip()


def describe(d: dict[str, Any]) -> str:
    st = d.get("status", {})
    meta = d["metadata"]
    out = [f"Kind:        {d['kind']}", f"Name:        {meta['name']}", f"Namespace:   {meta.get('namespace')}",
           f"Generation:  {d.get('generation')} (observed {st.get('observedGeneration', 0)})",
           f"Ready:       {'yes' if st.get('ready') else 'no'}"]
    if d.get("source"):
        out.append(f"Source:      {d['source']}")
    if st.get("containerImage"):
        out.append(f"Image:       {st['containerImage']}")
    if st.get("url"):
        out.append(f"URL:         {st['url']}")
    if d.get("serverToken"):
        out.append(f"Token:       {d['serverToken']}  (send `Authorization: Bearer <token>`; published beyond "
                   "loopback)")
    out += ["Spec:", _indent(yaml.safe_dump(d.get("spec", {}), sort_keys=False).rstrip()), "Conditions:"]
    for c in st.get("conditions", []):
        out.append(f"  {c['type']:<10} {c['status']:<8} {c['reason']:<18} {c.get('lastTransitionTime', '')}")
        if c.get("message"):
            out.append(_indent(c["message"], 6))
    out.append("Containers:" + ("" if d.get("containers") else " none"))
    for c in d.get("containers", []):
        ports = ", ".join(f"127.0.0.1:{h}->{p}" for p, h in c.get("ports", {}).items())
        out.append(f"  {c['name']}  {c['status']}  {c['image']}  {ports}".rstrip())
    out.append("Log files:" + ("" if d.get("logFiles") else " none"))
    out += [f"  {p}" for p in d.get("logFiles", [])]
    out.append(f"Logs: sub logs {d['kind'].lower()} {meta['name']}")
    return "\n".join(out)


def _indent(text: str, n: int = 2) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())
