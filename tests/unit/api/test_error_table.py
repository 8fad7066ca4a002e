"""The one table from exceptions to HTTP status codes: a type decides the status, never a message,
and the CLI gets the same type back from the body."""

from __future__ import annotations

import pytest

from substratus.api.errors import error_body, error_from_body, status_for
from substratus.errors import (
    AlreadyExists,
    ConflictError,
    EngineError,
    ImageMissing,
    NameInUse,
    NotFoundError,
    SubstratusError,
    Unauthorized,
    ValidationError,
)


@pytest.mark.parametrize(("err", "code"), [
    (Unauthorized("missing or wrong API token"), 401),
    (Unauthorized("any words at all"), 401),
    (ValidationError([("spec", "bad")]), 422),
    (NotFoundError("gone"), 404),
    (ConflictError("changed"), 409),
    (EngineError("engine down"), 503),
    (NameInUse("x"), 503), (ImageMissing("x"), 503), (AlreadyExists("x"), 503),
    (SubstratusError("other"), 500),
])
def test_the_type_decides_the_status(err: SubstratusError, code: int) -> None:
    assert status_for(err) == code


def test_the_cli_gets_unauthorized_back() -> None:
    back = error_from_body(error_body(Unauthorized("missing or wrong API token", hint="send the token")))
    assert type(back) is Unauthorized and back.hint == "send the token"
