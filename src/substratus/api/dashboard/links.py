"""The links an object's page offers: a server's API docs and own /metrics, a notebook's open button.

A server's `/metrics` is linked only where it has one: `probe_metrics` asks
it (with its bearer token when it has one) and remembers the answer for a
while, so a page view costs at most one small request: at most METRICS_CAP
bytes of the body are read, within PROBE_SECONDS in all (a server is not
trusted to answer with a small body, or to finish). A notebook's
`status.url` carries its token, so the page never shows it: the open button
points at the dashboard's `/ui/open/...`, which redirects a logged-in
browser there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlsplit, urlunsplit

from substratus.runtimes.answers import AnswerTooLarge, AnswerTooSlow, raw_async

if TYPE_CHECKING:
    import httpx

METRICS_PATH = "/metrics"
PROBE_TTL = 30.0
PROBE_SECONDS = 3.0        # the whole probe: connect, headers and body (runtimes.answers)
METRICS_CAP = 64 * 1024    # bytes of a server's /metrics read: its first lines say what it is


def open_path(kind: str, namespace: str, name: str) -> str:
    return f"/ui/open/{kind}/{namespace}/{name}"


def object_links(doc: dict[str, Any], has_metrics: bool) -> list[dict[str, str]]:
    """Named links for one object (wire form), in the order the page shows them."""
    kind, status = doc.get("kind"), doc.get("status") or {}
    meta = doc.get("metadata") or {}
    url = status.get("url")
    if kind == "ModelServer" and url and status.get("ready"):
        links = [{"name": "API docs", "href": f"{url}/docs", "rel": "docs"},
                 {"name": "OpenAPI", "href": f"{url}/openapi.json", "rel": "openapi"}]
        if has_metrics:
            links.append({"name": "Metrics", "href": f"{url}{METRICS_PATH}", "rel": "metrics"})
        return links
    if kind == "Notebook" and url and status.get("ready"):
        return [{"name": "Open notebook", "href": open_path("Notebook", meta.get("namespace", "default"),
                                                             meta.get("name", "")), "rel": "open"}]
    return []


def without_query(url: str) -> str:
    """A URL with its query and fragment dropped (a notebook's token lives in its query)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def redact(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as the browser may see it: a notebook's URL without its token."""
    status = doc.get("status") or {}
    if doc.get("kind") == "Notebook" and status.get("url"):
        return {**doc, "status": {**status, "url": without_query(str(status["url"]))}}
    return doc


class MetricsProbe:
    """Whether a server answers GET /metrics with Prometheus text, remembered for PROBE_TTL seconds."""

    def __init__(self, client: "httpx.AsyncClient", clock: Callable[[], float] = time.monotonic) -> None:
        self.client, self.clock = client, clock
        self._seen: dict[str, tuple[float, bool]] = {}

    async def has_metrics(self, base_url: str, token: Optional[str]) -> bool:
        cached = self._seen.get(base_url)
        if cached and cached[0] > self.clock():
            return cached[1]
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            status, body = await asyncio.wait_for(self._get(f"{base_url}{METRICS_PATH}", headers), PROBE_SECONDS)
            found = status == 200 and looks_like_prometheus(body.decode("utf-8", errors="replace"))
        except (httpx.HTTPError, AnswerTooLarge, AnswerTooSlow, asyncio.TimeoutError):
            found = False
        self._seen[base_url] = (self.clock() + PROBE_TTL, found)
        return found

    async def _get(self, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """Status and at most METRICS_CAP bytes of the body: only its first lines are looked at."""
        async with self.client.stream("GET", url, headers={**headers, "Accept-Encoding": "identity"},
                                      timeout=PROBE_SECONDS) as resp:
            if resp.status_code != 200:
                return resp.status_code, b""
            body = bytearray()
            async for chunk in raw_async(resp):
                body += chunk
                if len(body) >= METRICS_CAP:
                    break  # enough to tell Prometheus text from anything else; the rest is never read
            return resp.status_code, bytes(body[:METRICS_CAP])


def looks_like_prometheus(text: str) -> bool:
    """The text exposition format: `# HELP`/`# TYPE` lines or `name value` samples."""
    for raw in text.splitlines()[:50]:
        line = raw.strip()
        if line.startswith("# TYPE ") or line.startswith("# HELP "):
            return True
        if line and not line.startswith("#"):
            parts = line.rsplit(" ", 1)
            try:
                float(parts[-1])
                return len(parts) == 2 and parts[0][:1].isalpha()
            except ValueError:
                return False
    return False
