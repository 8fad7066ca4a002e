"""Issue 25 item 9: the control plane's /docs loads nothing from the network (api.docs)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from substratus.api.app import create_app
from tests.unit.cli.test_cli_api_selectors import TOKEN
from tests.unit.fakes.controlplane import Env


def test_docs_use_only_assets_served_by_the_control_plane(tmp_path: Path) -> None:
    """It loaded swagger-ui from cdn.jsdelivr.net at a floating version, into the page where the
    API token is pasted."""
    api = TestClient(create_app(Env(tmp_path).cp, TOKEN))
    page = api.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert urls and all(u.startswith("/docs-assets/") for u in urls), urls
    assert "http" not in page.text.replace("http-equiv", "")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self' 'sha256-" in csp and "unsafe-inline" not in \
        csp.split("script-src", 1)[1].split(";", 1)[0]
    for url in urls:
        asset = api.get(url)
        assert asset.status_code == 200 and len(asset.content) > 500, url
    assert api.get("/docs-assets/../../token").status_code == 404
    assert api.get("/docs-assets/index.html").status_code == 404  # a fixed list, not a directory
    assert api.get("/redoc").status_code in (401, 404)  # ReDoc comes from a CDN too: not served
