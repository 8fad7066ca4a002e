"""`POST /api/v1/dashboard/codes`: a one-time login code for `sub dashboard`.

Guarded by the API token like the rest of /api/v1; the answer is a path
(`/ui/login#code=...`) rather than a URL because the control plane may be
reached over a Unix socket while browsers use its TCP port: the CLI joins
the two. The code is in the fragment, which browsers never send to a server.
"""

from __future__ import annotations

import hmac
from typing import Optional

from fastapi import APIRouter, Header
from pydantic import BaseModel

from substratus.api.dashboard import Dashboard
from substratus.errors import Unauthorized


class LoginCode(BaseModel):
    code: str
    expiresIn: int
    path: str


def router(dash: Dashboard) -> APIRouter:
    r = APIRouter()

    @r.post("/api/v1/dashboard/codes", response_model=LoginCode, tags=["dashboard"])
    def issue_code(authorization: Optional[str] = Header(default=None)) -> LoginCode:
        """A single-use login code for the dashboard, valid for two minutes."""
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given.encode(), dash.token.encode()):
            # the app's error table answers 401 for it, as for the rest of /api/v1
            raise Unauthorized("missing or wrong API token", hint="the CLI reads it from $SUBSTRATUS_HOME/token")
        code, ttl = dash.codes.issue()
        return LoginCode(code=code, expiresIn=int(ttl), path=f"/ui/login#code={code}")

    return r
