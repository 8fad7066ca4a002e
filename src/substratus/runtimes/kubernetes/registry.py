"""Image configs from an OCI registry: `image_info` without an engine.

In a cluster the images the builder pushed live in a registry, not in a local
engine. The contract's static clauses need the image config (WORKDIR, Env,
Labels), which the distribution API serves: the manifest (an index is
resolved to linux/amd64), then the config blob. Anonymous bearer tokens are
fetched the standard way when a registry asks for them; credentials come from
a docker config.json when one is given.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

import httpx

from substratus.errors import EngineError, Unauthorized
from substratus.runtimes.base import ImageInfo

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")


def split_ref(ref: str) -> tuple[str, str, str]:
    """`host[:port]/repo/name:tag` (or `@sha256:...`) -> (host, repository, tag or digest)."""
    name, reference = (ref.split("@", 1) if "@" in ref else (ref.rsplit(":", 1) if ":" in ref.rsplit("/", 1)[-1]
                                                              else (ref, "latest")))
    host, _, repo = name.partition("/")
    if not repo or ("." not in host and ":" not in host and host != "localhost"):
        host, repo = "registry-1.docker.io", name if "/" in name else f"library/{name}"
    return host, repo, reference


class RegistryClient:
    """Reads manifests and configs; `insecure` registries are spoken to over plain HTTP."""

    def __init__(self, *, insecure_hosts: tuple[str, ...] = (), docker_config: Optional[Path] = None,
                 timeout: float = 30) -> None:
        self.insecure_hosts = insecure_hosts
        self.auths: dict[str, Any] = {}
        if docker_config is not None and docker_config.is_file():
            self.auths = json.loads(docker_config.read_text()).get("auths", {})
        self.http = httpx.Client(timeout=timeout, follow_redirects=True)

    def _base(self, host: str) -> str:
        return f"{'http' if host in self.insecure_hosts else 'https'}://{host}/v2"

    def _get(self, host: str, path: str, accept: str) -> httpx.Response:
        url = f"{self._base(host)}{path}"
        try:
            resp = self.http.get(url, headers={"Accept": accept})
            if resp.status_code == 401 and "bearer" in resp.headers.get("www-authenticate", "").lower():
                token = self._token(host, resp.headers["www-authenticate"])
                resp = self.http.get(url, headers={"Accept": accept, "Authorization": f"Bearer {token}"})
        except httpx.HTTPError as err:
            raise EngineError(f"cannot reach the registry {host}: {err}",
                              hint="check the registry setting and that this machine can reach it") from err
        return resp

    def _token(self, host: str, challenge: str) -> str:
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        params = {k: fields[k] for k in ("service", "scope") if k in fields}
        auth = self.auths.get(host, {}).get("auth")
        headers = {"Authorization": f"Basic {auth}"} if auth else {}
        resp = self.http.get(fields.get("realm", ""), params=params, headers=headers)
        if resp.status_code != 200:
            raise Unauthorized(f"registry {host} refused a token ({resp.status_code})",
                              hint="set settings.registrySecret to credentials that can pull")
        body = resp.json()
        return str(body.get("token") or body.get("access_token") or "")

    def manifest(self, ref: str) -> Optional[tuple[dict[str, Any], str]]:
        """(manifest, digest) of an image, the linux/amd64 one of an index; None when absent."""
        host, repo, reference = split_ref(ref)
        resp = self._get(host, f"/{repo}/manifests/{reference}", MANIFEST_TYPES)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise EngineError(f"registry {host}: GET manifest {repo}:{reference} -> {resp.status_code}")
        data: dict[str, Any] = resp.json()
        if data.get("mediaType") in INDEX_TYPES or "manifests" in data:
            pick = next((m for m in data.get("manifests", [])
                         if m.get("platform", {}).get("os") == "linux"
                         and m.get("platform", {}).get("architecture") == "amd64"), None)
            if pick is None:
                return None
            return self.manifest(f"{host}/{repo}@{pick['digest']}")
        return data, resp.headers.get("docker-content-digest", "")

    def image_info(self, ref: str) -> Optional[ImageInfo]:
        found = self.manifest(ref)
        if found is None:
            return None
        manifest, digest = found
        host, repo, _ = split_ref(ref)
        blob = self._get(host, f"/{repo}/blobs/{manifest['config']['digest']}", "*/*")
        if blob.status_code != 200:
            raise EngineError(f"registry {host}: config blob of {ref} -> {blob.status_code}")
        cfg = (blob.json().get("config") or {})
        env = dict(e.split("=", 1) for e in (cfg.get("Env") or []) if "=" in e)
        return ImageInfo(ref=ref, id=manifest["config"]["digest"] or digest, workdir=cfg.get("WorkingDir") or "",
                         env=env, labels=cfg.get("Labels") or {}, entrypoint=cfg.get("Entrypoint") or [],
                         cmd=cfg.get("Cmd") or [])

    def repositories(self, host: str) -> list[str]:
        """Every repository the registry lists (`/v2/_catalog`; some registries refuse: then [])."""
        resp = self._get(host, "/_catalog?n=10000", "application/json")
        return list(resp.json().get("repositories") or []) if resp.status_code == 200 else []

    def tags(self, host: str, repo: str) -> list[str]:
        resp = self._get(host, f"/{repo}/tags/list", "application/json")
        return list(resp.json().get("tags") or []) if resp.status_code == 200 else []

    def digest(self, ref: str) -> str:
        found = self.manifest(ref)
        return found[1] if found else ""

    def delete(self, ref: str) -> bool:
        """Delete a manifest (registries often forbid it: then False)."""
        found = self.manifest(ref)
        if found is None or not found[1]:
            return False
        host, repo, _ = split_ref(ref)
        resp = self.http.delete(f"{self._base(host)}/{repo}/manifests/{found[1]}")
        return resp.status_code in (200, 202)

