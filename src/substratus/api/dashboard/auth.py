"""Who may use the dashboard: one-time login codes, sessions, CSRF and host checks.

The API token (in $SUBSTRATUS_HOME/token) never reaches a browser. Instead,
`sub dashboard` asks the control plane (with that token) for a login code: a
short random code, valid for a couple of minutes and for one login only. The
browser trades it for a session: a random id in an HttpOnly, SameSite=Strict
cookie scoped to /ui, expiring after SESSION_TTL, kept in memory (a daemon
restart logs everyone out, which is the safe direction). Each session also has
a CSRF token the page sends in a header on every state-changing request,
checked together with the Origin header.

Cookies are not isolated by port, so the cookie is named after the port and
scoped to /ui: other services on 127.0.0.1 (servers, notebooks) see it only if
a page sends them to a /ui path of their own. Requests whose Host is not a
loopback name are refused (DNS rebinding).

Clocks are injected so tests never wait on real time.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

CODE_TTL = 120.0               # seconds a login code stays valid
SESSION_TTL = 12 * 3600.0      # seconds a session lasts (absolute, not sliding)
MAX_CODES = 16                 # outstanding codes kept; the oldest is dropped beyond this
MAX_SESSIONS = 64
MAX_FAILED = 10                # wrong codes one client may try per FAIL_WINDOW before it must wait
FAIL_WINDOW = 60.0             # seconds
MAX_CLIENTS = 4096             # clients whose failures are remembered (the oldest are forgotten)
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: people may type it
CODE_LENGTH = 10
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
CSRF_HEADER = "x-csrf-token"

Clock = Callable[[], float]


def new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def normalise_code(text: str) -> str:
    """What a person typed, as issued: upper-case, dash in the middle, spaces ignored."""
    raw = "".join(ch for ch in text.upper() if ch.isalnum())
    return f"{raw[:5]}-{raw[5:]}" if len(raw) == CODE_LENGTH else ""


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str
    expires_at: float


class LoginCodes:
    """Single-use, short-lived codes. Thread-safe: issued from the API, redeemed from the browser.

    Wrong codes are limited per client (`client`: the browser's login cookie, else its address):
    after MAX_FAILED in FAIL_WINDOW that client waits, and nobody else is affected. (Revoking every
    code after 20 misses, as before, let any local process block every login.) What stops guessing
    is the code itself: 50 random bits, valid for CODE_TTL seconds and for one login; a client that
    makes itself new identities is slowed by nothing else, and at the thousands of guesses a second
    the control plane can answer, a code's chance of being guessed in its life is about 1e-8."""

    def __init__(self, clock: Clock = time.monotonic, ttl: float = CODE_TTL) -> None:
        self.clock, self.ttl = clock, ttl
        self._lock = threading.Lock()
        self._codes: OrderedDict[str, float] = OrderedDict()   # code -> expiry
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()  # client -> (window start, misses)

    def issue(self) -> tuple[str, float]:
        """A new code and how many seconds it is valid."""
        code = new_code()
        with self._lock:
            self._expire()
            self._codes[code] = self.clock() + self.ttl
            while len(self._codes) > MAX_CODES:
                self._codes.popitem(last=False)
        return code, self.ttl

    def redeem(self, given: str, client: str = "") -> bool:
        """True once for a valid code; the code is gone afterwards. A throttled client gets False
        without its code being looked at."""
        code = normalise_code(given)
        with self._lock:
            self._expire()
            if self._throttled(client):
                return False
            match = next((c for c in self._codes if hmac.compare_digest(c, code)), None) if code else None
            if match is None:
                self._missed(client)
                return False
            del self._codes[match]
            return True

    def throttled(self, client: str) -> bool:
        """Whether `client` tried too many wrong codes lately and must wait."""
        with self._lock:
            return self._throttled(client)

    def _throttled(self, client: str) -> bool:
        start, misses = self._failures.get(client, (0.0, 0))
        return misses >= MAX_FAILED and self.clock() - start < FAIL_WINDOW

    def _missed(self, client: str) -> None:
        now = self.clock()
        start, misses = self._failures.pop(client, (now, 0))
        self._failures[client] = (start, misses + 1) if now - start < FAIL_WINDOW else (now, 1)
        while len(self._failures) > MAX_CLIENTS:
            self._failures.popitem(last=False)

    def outstanding(self) -> int:
        with self._lock:
            self._expire()
            return len(self._codes)

    def _expire(self) -> None:
        now = self.clock()
        for code in [c for c, exp in self._codes.items() if exp <= now]:
            del self._codes[code]


class Sessions:
    """Browser sessions by random id, each with its own CSRF token."""

    def __init__(self, clock: Clock = time.monotonic, ttl: float = SESSION_TTL) -> None:
        self.clock, self.ttl = clock, ttl
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self) -> Session:
        session = Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(24),
                          expires_at=self.clock() + self.ttl)
        with self._lock:
            self._sessions[session.id] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return session

    def get(self, session_id: Optional[str]) -> Optional[Session]:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires_at <= self.clock():
                del self._sessions[session_id]
                return None
            return session

    def end(self, session_id: Optional[str]) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def remaining(self, session: Session) -> int:
        return max(0, int(session.expires_at - self.clock()))


def cookie_name(port: Optional[int]) -> str:
    """One cookie per control-plane port: two dashboards on one machine do not log each other out."""
    return f"substratus_session_{port or 0}"


def loopback_host(host_header: str) -> bool:
    """The Host header names 127.0.0.1, localhost or [::1] (any port): not a rebound DNS name."""
    host = host_header.strip().lower()
    if host.startswith("["):
        name = host.split("]", 1)[0] + "]"
    else:
        name = host.rsplit(":", 1)[0] if ":" in host else host
    return name in LOOPBACK_HOSTS


def same_origin(origin: Optional[str], host_header: str) -> bool:
    """The Origin header (sent by browsers on POST) names this very host and port."""
    if not origin or origin == "null":
        return False
    parts = urlsplit(origin)
    return parts.scheme == "http" and parts.netloc.lower() == host_header.strip().lower()


def csrf_ok(session: Session, given: Optional[str], origin: Optional[str], host_header: str) -> bool:
    """A state-changing request: same origin, and the session's CSRF token in its header."""
    return bool(given) and same_origin(origin, host_header) and \
        hmac.compare_digest(session.csrf.encode(), (given or "").encode())
