"""The dashboard's pages: login, logout, the app shell, static assets, the notebook redirect.

The app shell (`index.html`) and its assets hold no secret and no per-user
data: the page asks /ui/api for everything once it runs. Assets are served
from a fixed list made when the dashboard is mounted (no path from the URL
ever reaches the filesystem).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from substratus.api.dashboard import Dashboard
from substratus.api.dashboard.auth import SESSION_TTL, cookie_name, same_origin
from substratus.api.dashboard.web import SECURITY_HEADERS, check_host, host_of, require_csrf, session_of
from substratus.errors import NotFoundError
from substratus.resources.kinds import canonical_kind

STATIC = Path(__file__).with_name("static")
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
         ".txt": "text/plain; charset=utf-8"}
MAX_FORM = 4096


def assets() -> dict[str, tuple[bytes, str]]:
    """Every shipped asset by its URL path under /ui/static/, read once."""
    out = {}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file() and path.suffix in TYPES:
            out[path.relative_to(STATIC).as_posix()] = (path.read_bytes(), TYPES[path.suffix])
    return out


def login_cookie(port: Optional[int]) -> str:
    return f"substratus_login_{port or 0}"


def login_client(request: Request) -> Optional[str]:
    """The login page's cookie of this browser (`cookie:<value>`), or None when it has none."""
    value = request.cookies.get(login_cookie(request.url.port), "")
    return f"cookie:{value}" if 20 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum() \
        else None


def page(body: bytes, media_type: str, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=media_type, headers=SECURITY_HEADERS)


def router(dash: Dashboard) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    files = assets()

    def html(name: str) -> Response:
        body, media = files[name]
        return page(body, media)

    @r.get("/ui")
    def ui_root() -> Response:
        return RedirectResponse("/ui/", status_code=307)

    @r.get("/ui/")
    def index(request: Request) -> Response:
        if session_of(request, dash.sessions) is None:
            return RedirectResponse("/ui/login", status_code=303, headers=SECURITY_HEADERS)
        return html("index.html")

    @r.get("/ui/static/{path:path}")
    def static(path: str) -> Response:
        found = files.get(path)
        if found is None:
            return page(b"not found", "text/plain", 404)
        return Response(found[0], media_type=found[1], headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    @r.get("/ui/login")
    def login_page(request: Request) -> Response:
        check_host(request)
        resp = html("login.html")
        if login_client(request) is None:  # who this browser is, so that wrong codes count against it alone
            resp.set_cookie(login_cookie(request.url.port), secrets.token_urlsafe(24), max_age=3600,
                            path="/ui/login", httponly=True, samesite="strict")
        return resp

    @r.post("/ui/login")
    async def login(request: Request) -> Response:
        check_host(request)
        if not same_origin(request.headers.get("origin"), host_of(request)):
            return RedirectResponse("/ui/login?error=origin", status_code=303, headers=SECURITY_HEADERS)
        client = login_client(request) or f"address:{request.client.host if request.client else ''}"
        if dash.codes.throttled(client):
            return RedirectResponse("/ui/login?error=wait", status_code=303, headers=SECURITY_HEADERS)
        raw = (await request.body())[:MAX_FORM].decode(errors="replace")
        code = (parse_qs(raw).get("code") or [""])[0]
        if not dash.codes.redeem(code, client):
            return RedirectResponse("/ui/login?error=code", status_code=303, headers=SECURITY_HEADERS)
        session = dash.sessions.create()
        resp = RedirectResponse("/ui/", status_code=303, headers=SECURITY_HEADERS)
        resp.set_cookie(cookie_name(request.url.port), session.id, max_age=int(SESSION_TTL), path="/ui",
                        httponly=True, samesite="strict")
        return resp

    @r.post("/ui/logout")
    def logout(request: Request) -> Response:
        session = require_csrf(request, dash.sessions)
        dash.sessions.end(session.id)
        resp = JSONResponse({"loggedOut": True}, headers=SECURITY_HEADERS)
        resp.delete_cookie(cookie_name(request.url.port), path="/ui", httponly=True, samesite="strict")
        return resp

    @r.get("/ui/open/{kind}/{namespace}/{name}")
    def open_workload(request: Request, kind: str, namespace: str, name: str) -> Response:
        """Send a logged-in browser to a notebook (its URL holds its token, so the page never shows it)."""
        if session_of(request, dash.sessions) is None:
            return RedirectResponse("/ui/login", status_code=303, headers=SECURITY_HEADERS)
        rec = dash.cp.get(canonical_kind(kind), namespace, name)
        url = rec.status.get("url")
        if rec.kind != "Notebook" or not rec.status.get("ready") or not url:
            raise NotFoundError(f"{rec.kind} {name!r} has nothing to open yet",
                                hint=f"see `sub describe {rec.kind.lower()} {name}`")
        return RedirectResponse(str(url), status_code=303, headers={**SECURITY_HEADERS})

    return r
