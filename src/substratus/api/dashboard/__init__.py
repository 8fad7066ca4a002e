"""The web dashboard at /ui/ on the control plane's TCP port (127.0.0.1).

`api.app.create_app` calls `mount_dashboard` once. Three groups of routes:

- `codes`: `POST /api/v1/dashboard/codes`, with the API token, hands `sub
  dashboard` a one-time login code (`auth`);
- `pages`: the login page, the single-page app's HTML, its static assets (plain
  ES modules and CSS shipped in this package, nothing fetched from elsewhere),
  the notebook open redirect;
- `data`: JSON, server-sent events and the playground's NDJSON stream under
  /ui/api, for a logged-in browser only.

Every /ui response carries a strict Content-Security-Policy (same origin
only), so a page cannot load anything from another host even by mistake.

`codes` is mounted with the API (it is part of the OpenAPI document); `pages`
and `data`, their modules and routes, are built when the first /ui request
comes (`MountOnFirstUse`): a control plane that no browser looks at should
not pay for them at every start, before it answers its first `sub apply`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from substratus.api.dashboard.auth import LoginCodes, Sessions
from substratus.api.watch import Hub
from substratus.local.service import ControlPlane

if TYPE_CHECKING:
    import httpx  # imported when first used: it costs ~0.1 s of every control plane's start-up

    from substratus.api.dashboard.links import MetricsProbe


@dataclass
class Dashboard:
    """What the dashboard's routes share: the control plane, the change feed, logins, an HTTP client."""

    cp: ControlPlane
    hub: Hub
    token: str
    codes: LoginCodes = field(default_factory=LoginCodes)
    sessions: Sessions = field(default_factory=Sessions)
    _http: Optional["httpx.AsyncClient"] = field(default=None, repr=False)
    _probe: Optional[MetricsProbe] = field(default=None, repr=False)

    @property
    def http(self) -> "httpx.AsyncClient":
        """The client for servers' /metrics and the playground, made on first use."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(trust_env=False)
        return self._http

    @http.setter
    def http(self, client: "httpx.AsyncClient") -> None:
        self._http = client

    @property
    def probe(self) -> "MetricsProbe":
        if self._probe is None:
            from substratus.api.dashboard.links import MetricsProbe

            self._probe = MetricsProbe(self.http)
        return self._probe


def is_ui(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")


class MountOnFirstUse:
    """ASGI middleware: calls `mount` before the first request for a /ui path goes on to the routes."""

    def __init__(self, app: ASGIApp, mount: Callable[[], None]) -> None:
        self.app = app
        self.mount: Optional[Callable[[], None]] = mount

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.mount is not None and scope["type"] in ("http", "websocket") and is_ui(scope["path"]):
            self.mount()  # on the event loop, so no other request is routed meanwhile
            self.mount = None
        await self.app(scope, receive, send)


def mount_dashboard(app: FastAPI, cp: ControlPlane, hub: Hub, token: str) -> Dashboard:
    """Add the dashboard's routes to the control plane's app (those under /ui when first asked for);
    returns the shared state (for tests)."""
    from substratus.api.dashboard import codes

    dash = Dashboard(cp=cp, hub=hub, token=token)
    app.state.dashboard = dash
    app.include_router(codes.router(dash))

    def mount_ui() -> None:
        from substratus.api.dashboard import data, pages

        routers = [pages.router(dash), data.router(dash)]  # both built before either is added
        for router in routers:
            app.include_router(router)

    app.add_middleware(MountOnFirstUse, mount=mount_ui)
    return dash
