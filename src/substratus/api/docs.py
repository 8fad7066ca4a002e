"""The control plane's /docs page with Swagger UI served from this package: nothing from a CDN.

FastAPI's default /docs loads swagger-ui from a CDN at a floating version with no integrity
check, into the page where people paste the API token to try requests. Here the assets come
from the `swagger-ui-bundle` package (a fixed list read once; no path from the URL reaches
the filesystem), the page's one inline script is allowed by its hash, and a
Content-Security-Policy keeps the page from loading or sending anything to another origin.
ReDoc (which FastAPI also loads from a CDN) is not served. `create_app` calls `add_docs`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import Response

from substratus import contract

ASSETS = "/docs-assets"
FILES = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8",
         "favicon-32x32.png": "image/png"}
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def assets_dir() -> Path:
    from swagger_ui_bundle import swagger_ui_path

    return Path(str(swagger_ui_path))


def page(title: str, openapi_url: str) -> tuple[bytes, str]:
    """The /docs HTML and its Content-Security-Policy (the inline initialiser allowed by its sha256)."""
    html = get_swagger_ui_html(openapi_url=openapi_url, title=title, swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{ASSETS}/swagger-ui.css",
                               swagger_favicon_url=f"{ASSETS}/favicon-32x32.png").body
    hashes = " ".join("'sha256-" + base64.b64encode(hashlib.sha256(m.encode()).digest()).decode() + "'"
                      for m in INLINE_SCRIPT.findall(bytes(html).decode()))
    csp = (f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
           "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'")
    return bytes(html), csp


def add_docs(app: FastAPI, title: str) -> None:
    """Serve /docs and its assets (the app must be created with docs_url=None, redoc_url=None)."""
    root = assets_dir()
    files = {name: (root / name).read_bytes() for name in FILES}
    html, csp = page(title, app.openapi_url or "/openapi.json")
    headers = {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
               "X-Frame-Options": "DENY"}

    @app.get(contract.DOCS_PATH, include_in_schema=False)  # where the contract's servers keep theirs too
    def docs() -> Response:
        return Response(html, media_type="text/html; charset=utf-8", headers={**headers, "Cache-Control": "no-store"})

    @app.get(ASSETS + "/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in files:
            return Response(b"not found", status_code=404, media_type="text/plain", headers=headers)
        return Response(files[name], media_type=FILES[name], headers=headers)
