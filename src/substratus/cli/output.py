"""Rendering objects for people (tables, describe) and for scripts (json, yaml).

`sub get` of 1,000 objects must finish within 0.25 s, start-up included: YAML
is imported only for `-o yaml` and describe, and timestamps in the form the
control plane writes are read without `strptime` (5 us instead of 12 us each,
no `_strptime` import), each distinct one once.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Optional

from substratus.reconcile import conditions
from substratus.resources.kinds import KIND_ORDER

STAMP = "%Y-%m-%dT%H:%M:%SZ"


def ready_condition(obj: dict[str, Any]) -> dict[str, Any]:
    """The object's `Ready` condition, `{}` when it has none."""
    return conditions.ready_condition(obj.get("status") or {})


@lru_cache(maxsize=4096)  # objects applied together share their timestamps
def parse_stamp(ts: str) -> Optional[datetime]:
    """`2026-11-27T14:13:53Z` as an aware datetime, None when it is not one (as `strptime` judges)."""
    digits = ts[0:4] + ts[5:7] + ts[8:10] + ts[11:13] + ts[14:16] + ts[17:19]
    try:
        if len(ts) == 20 and ts[4] + ts[7] + ts[10] + ts[13] + ts[16] + ts[19] == "--T::Z" \
                and digits.isascii() and digits.isdigit():
            return datetime(int(ts[0:4]), int(ts[5:7]), int(ts[8:10]), int(ts[11:13]), int(ts[14:16]),
                            int(ts[17:19]), tzinfo=timezone.utc)
        return datetime.strptime(ts, STAMP).replace(tzinfo=timezone.utc)  # any other spelling it accepts
    except ValueError:
        return None


def age(ts: str) -> str:
    then = parse_stamp(ts)
    if then is None:
        return "-"
    s = int((datetime.now(timezone.utc) - then).total_seconds())
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


HEADER = ("KIND", "NAME", "READY", "REASON", "PROGRESS", "URL / IMAGE", "SINCE")


def percent(o: dict[str, Any]) -> str:
    """`42%` of a running load or training job (status.progress), `-` when there is none."""
    value = (o.get("status", {}).get("progress") or {}).get("percent")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    return f"{value:.0f}%" if value == int(value) or value >= 10 else f"{value:.1f}%"


def row(o: dict[str, Any], reason: str = "") -> tuple[str, ...]:
    """One table row; `reason` overrides the Ready reason (a watch says `Deleted`)."""
    st = o.get("status", {})
    cond = ready_condition(o)
    ns = o["metadata"].get("namespace", "default")
    name = o["metadata"]["name"] if ns == "default" else f"{ns}/{o['metadata']['name']}"
    return (o["kind"], name, "yes" if st.get("ready") else "no", reason or cond.get("reason", "Pending"),
            percent(o), st.get("url") or st.get("containerImage") or "-", age(cond.get("lastTransitionTime", "")))


def format_rows(rows: list[tuple[str, ...]], widths: list[int]) -> list[str]:
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def widths_of(rows: list[tuple[str, ...]]) -> list[int]:
    return [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]


def table(items: list[dict[str, Any]]) -> str:
    items = sorted(items, key=lambda o: (KIND_ORDER.index(o["kind"]) if o["kind"] in KIND_ORDER else 9,
                                         o["metadata"]["name"]))
    rows = [HEADER, *(row(o) for o in items)]
    if len(rows) == 1:
        return "No objects found."
    return "\n".join(format_rows(rows, widths_of(rows)))


def dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2)
    import yaml

    return yaml.safe_dump(data, sort_keys=False).rstrip()


def describe(d: dict[str, Any]) -> str:
    import yaml

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
    if d.get("notebookToken"):
        out.append(f"Token:       {d['notebookToken']}  (open the URL with ?token=<token>)")
    out += ["Spec:", _indent(yaml.safe_dump(d.get("spec", {}), sort_keys=False).rstrip()), "Conditions:"]
    for c in st.get("conditions", []):
        out.append(f"  {c['type']:<10} {c['status']:<8} {c['reason']:<18} {c.get('lastTransitionTime', '')}")
        if c.get("message"):
            out.append(_indent(c["message"], 6))
    out += describe_progress(st.get("progress")) + describe_lineage(st.get("lineage"))
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


def describe_progress(p: Any) -> list[str]:
    """The last values a load or training job reported (status.progress)."""
    if not isinstance(p, dict) or not p:
        return []
    out = [f"Progress:    {p.get('phase', '?')}"]
    if p.get("step") is not None:
        total = f"/{p['totalSteps']}" if p.get("totalSteps") else ""
        pct = f" ({p['percent']}%)" if p.get("percent") is not None else ""
        out.append(f"  Step:      {p['step']}{total}{pct}")
    for label, key in (("Epoch", "epoch"), ("Loss", "loss")):
        if p.get(key) is not None:
            out.append(f"  {label + ':':<11}{p[key]:g}")
    if p.get("etaSeconds") is not None:
        out.append(f"  ETA:       {duration(float(p['etaSeconds']))}")
    if p.get("updatedAt") is not None:
        when = datetime.fromtimestamp(float(p["updatedAt"]), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(f"  Updated:   {when}")
    out += [f"  {k + ':':<11}{v:g}" for k, v in sorted((p.get("metrics") or {}).items())]
    return out


def describe_lineage(lin: Any) -> list[str]:
    """Where a trained model came from: base model, dataset, parameters, trained image."""
    if not isinstance(lin, dict) or not lin:
        return []
    out = ["Lineage:"]
    base, data = lin.get("baseModel") or {}, lin.get("dataset") or {}
    if base:
        out.append(f"  Base model:  {base.get('name')}  {base.get('image', '')}".rstrip())
        out += [f"    {k}: {v}" for k, v in (("image id", base.get("imageId")),
                                            ("source", (base.get("source") or {}).get("description"))) if v]
    if data:
        out.append(f"  Dataset:     {data.get('name')}  {data.get('url', '')}".rstrip())
        out += [f"    {k}: {v}" for k, v in (("digest", data.get("digest")),
                                            ("source", (data.get("source") or {}).get("description"))) if v]
    if lin.get("params"):
        out.append("  Params:      " + ", ".join(f"{k}={v}" for k, v in lin["params"].items()))
    if lin.get("trainedImage"):
        out.append(f"  Trained:     {lin['trainedImage']}")
    return out


def duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s}s" if s < 120 else f"{s // 60}m{s % 60:02d}s" if s < 7200 else f"{s // 3600}h{s % 3600 // 60:02d}m"
