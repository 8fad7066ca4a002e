"""Checks and headers every dashboard route shares: loopback Host, session cookie, CSRF.

Kept apart from the routes so the rules are read (and tested) in one place.
API routes answer 401/403 JSON (the page then goes to the login screen);
page routes redirect to /ui/login instead.
"""

from __future__ import annotations

from typing import Optional

from fastapi import HTTPException, Request

from substratus.api.dashboard.auth import CSRF_HEADER, Session, Sessions, cookie_name, csrf_ok, loopback_host

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes Chrome send `Origin: null` on our own POSTs
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def host_of(request: Request) -> str:
    return request.headers.get("host", "")


def check_host(request: Request) -> None:
    """Refuse a Host that is not a loopback name: a rebound DNS name must not reach the dashboard."""
    if not loopback_host(host_of(request)):
        raise HTTPException(status_code=421, detail="the dashboard answers on 127.0.0.1 only; open the URL that "
                                                    "`sub dashboard` prints")


def session_of(request: Request, sessions: Sessions) -> Optional[Session]:
    check_host(request)
    return sessions.get(request.cookies.get(cookie_name(request.url.port)))


def require_session(request: Request, sessions: Sessions) -> Session:
    session = session_of(request, sessions)
    if session is None:
        raise HTTPException(status_code=401, detail="not logged in (or the session expired): run `sub dashboard` "
                                                    "for a new login link")
    return session


def require_csrf(request: Request, sessions: Sessions) -> Session:
    """A logged-in browser, asking from our own origin with the session's CSRF token."""
    session = require_session(request, sessions)
    if not csrf_ok(session, request.headers.get(CSRF_HEADER), request.headers.get("origin"), host_of(request)):
        raise HTTPException(status_code=403, detail="cross-site request refused (Origin or CSRF token missing or "
                                                    "wrong); reload the dashboard")
    return session
