"""Login codes, sessions and the request checks of the dashboard (api/dashboard/auth.py)."""

from __future__ import annotations

import re

from substratus.api.dashboard import auth
from substratus.api.dashboard.auth import LoginCodes, Sessions


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_code_works_once() -> None:
    codes = LoginCodes(Clock())
    code, ttl = codes.issue()
    assert re.fullmatch(r"[A-Z2-9]{5}-[A-Z2-9]{5}", code) and ttl == auth.CODE_TTL
    assert codes.redeem(code) is True
    assert codes.redeem(code) is False
    assert codes.outstanding() == 0


def test_a_code_expires() -> None:
    clock = Clock()
    codes = LoginCodes(clock, ttl=60)
    code, _ = codes.issue()
    clock.t += 60
    assert codes.redeem(code) is False


def test_a_typed_code_may_differ_in_case_spaces_and_dash() -> None:
    codes = LoginCodes(Clock())
    code, _ = codes.issue()
    typed = " " + code.replace("-", " ").lower() + " "
    assert codes.redeem(typed) is True


def test_empty_and_malformed_codes_are_refused() -> None:
    codes = LoginCodes(Clock())
    codes.issue()
    for bad in ("", "-", "ABCDE", "ABCDE-FGHJKL", "<script>"):
        assert codes.redeem(bad) is False
    assert codes.outstanding() == 1


def test_wrong_codes_throttle_their_client_and_nobody_else() -> None:
    """Issue 25 item 10: twenty wrong codes from anyone revoked every outstanding code, so any
    local process could block every login."""
    clock = Clock()
    codes = LoginCodes(clock)
    good, _ = codes.issue()
    for _ in range(20):
        assert codes.redeem("AAAAA-AAAAA", "cookie:attacker") is False
    assert codes.outstanding() == 1 and codes.throttled("cookie:attacker")
    assert not codes.throttled("cookie:user")
    assert codes.redeem(good, "cookie:user") is True


def test_a_throttled_client_waits_out_the_window() -> None:
    clock = Clock()
    codes = LoginCodes(clock)
    good, _ = codes.issue()
    for _ in range(auth.MAX_FAILED):
        codes.redeem("AAAAA-AAAAA", "address:127.0.0.1")
    assert codes.redeem(good, "address:127.0.0.1") is False, "not even looked at while throttled"
    clock.t += auth.FAIL_WINDOW + 1
    assert codes.redeem(good, "address:127.0.0.1") is True


def test_the_clients_remembered_are_bounded() -> None:
    codes = LoginCodes(Clock())
    for i in range(auth.MAX_CLIENTS + 50):
        codes.redeem("AAAAA-AAAAA", f"cookie:{i}")
    assert len(codes._failures) == auth.MAX_CLIENTS


def test_old_codes_are_dropped_beyond_the_cap() -> None:
    codes = LoginCodes(Clock())
    first, _ = codes.issue()
    for _ in range(auth.MAX_CODES):
        codes.issue()
    assert codes.outstanding() == auth.MAX_CODES
    assert codes.redeem(first) is False


def test_sessions_expire_and_end() -> None:
    clock = Clock()
    sessions = Sessions(clock, ttl=3600)
    s = sessions.create()
    assert s.id != s.csrf and len(s.id) >= 40
    assert sessions.get(s.id) == s and sessions.remaining(s) == 3600
    clock.t += 3599
    assert sessions.get(s.id) == s
    clock.t += 1
    assert sessions.get(s.id) is None
    other = sessions.create()
    sessions.end(other.id)
    assert sessions.get(other.id) is None
    assert sessions.get(None) is None and sessions.get("") is None


def test_loopback_hosts_only() -> None:
    for ok in ("127.0.0.1:8080", "localhost:1", "LOCALHOST", "[::1]:9000", "127.0.0.1"):
        assert auth.loopback_host(ok), ok
    for bad in ("evil.example:8080", "127.0.0.1.evil.example", "", "10.0.0.1:80", "localhost.attacker:80"):
        assert not auth.loopback_host(bad), bad


def test_same_origin_needs_scheme_host_and_port() -> None:
    assert auth.same_origin("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert not auth.same_origin("http://127.0.0.1:8081", "127.0.0.1:8080")
    assert not auth.same_origin("https://127.0.0.1:8080", "127.0.0.1:8080")
    assert not auth.same_origin("null", "127.0.0.1:8080")
    assert not auth.same_origin(None, "127.0.0.1:8080")


def test_csrf_needs_the_token_and_the_origin() -> None:
    s = Sessions(Clock()).create()
    host = "127.0.0.1:5000"
    assert auth.csrf_ok(s, s.csrf, "http://127.0.0.1:5000", host)
    assert not auth.csrf_ok(s, "wrong", "http://127.0.0.1:5000", host)
    assert not auth.csrf_ok(s, None, "http://127.0.0.1:5000", host)
    assert not auth.csrf_ok(s, s.csrf, "http://evil.example", host)


def test_cookie_names_differ_by_port() -> None:
    assert auth.cookie_name(8080) != auth.cookie_name(8081)
