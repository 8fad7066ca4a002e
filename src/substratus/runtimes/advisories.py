"""Known container escapes of the engine, builder and OCI runtime this machine runs.

The control plane builds and runs what sources, images and loaders bring, often as root, so
it says at start which published escapes apply to the versions it finds (`podman info`,
`docker version`), and for each what Substratus does about it: some are closed by refusing
what triggers them (`sources.dockerfile`), some only an upgrade closes. `known_escapes` is
pure; `EngineRuntime.versions` (below, `engine_versions`) asks the engine. Called once at the
control plane's start, on a thread (`api.daemon`); what it finds is logged as warnings.
Distribution packages may carry a fix under an old version number: Debian 12's runc
1.1.5+ds1-1+deb12u1 has the fix for CVE-2024-21626, and its podman 4.3.1 does not have the
one for CVE-2024-1753 (checked: the escape works there).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

Version = tuple[int, ...]


@dataclass(frozen=True)
class Versions:
    engine: str                  # "podman" or "docker"
    engine_version: str = ""     # podman's or the docker daemon's
    builder_version: str = ""    # buildah inside podman; BuildKit comes with the docker daemon's version
    runtime_version: str = ""    # the OCI runtime's (runc) version line, as the engine reports it


@dataclass(frozen=True)
class Advisory:
    cve: str
    component: str
    fixed_in: str
    what: str
    defence: str     # what Substratus does; "" when only an upgrade closes it

    def line(self) -> str:
        handled = f"Substratus {self.defence}" if self.defence else "only an upgrade closes it"
        return f"{self.cve} ({self.component} < {self.fixed_in}): {self.what}; {handled}"


def parse_version(text: str) -> Optional[Version]:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(g or 0) for g in m.groups()) if m else None


def older(text: str, fixed: Version) -> bool:
    got = parse_version(text)
    return got is not None and got < fixed


DEBIAN_RUNC_BACKPORT = re.compile(r"1\.1\.5\+ds1-1\+deb12u[1-9]")


def known_escapes(v: Versions) -> list[Advisory]:
    """The published escapes that apply to these versions."""
    out: list[Advisory] = []
    if v.engine == "podman" and older(v.builder_version, (1, 35, 1)):
        out.append(Advisory("CVE-2024-1753", f"buildah {v.builder_version}", "1.35.1",
                            "RUN --mount=type=bind,from=STAGE of a link to / binds the host's root read-write "
                            "during a build", "refuses RUN --mount with from= (and bind sources that leave the "
                            "context) in every source"))
    if v.engine == "podman" and older(v.builder_version, (1, 37, 4)):
        out.append(Advisory("CVE-2024-9407", f"buildah {v.builder_version}", "1.37.4",
                            "RUN --mount's bind-propagation option is not validated", "refuses mount options "
                            "other than the plain ones"))
    if v.engine == "podman" and older(v.builder_version, (1, 37, 5)):
        out.append(Advisory("CVE-2024-9675", f"buildah {v.builder_version}", "1.37.5",
                            "a cache mount's source can name any host directory", "refuses cache mounts"))
    if v.engine == "docker" and older(v.engine_version, (25, 0, 2)):
        out.append(Advisory("CVE-2024-23651/23652/23653", f"docker {v.engine_version} (BuildKit)", "25.0.2",
                            "BuildKit cache mounts, mount teardown and frontends reach the host during a build",
                            "refuses cache mounts and custom `# syntax=` frontends; the mount teardown one "
                            "stays open"))
    if older(v.runtime_version, (1, 1, 12)) and not DEBIAN_RUNC_BACKPORT.search(v.runtime_version):
        out.append(Advisory("CVE-2024-21626", f"runc {parse_version(v.runtime_version) or '?'}", "1.1.12",
                            "a working directory under /proc/self/fd leaves a host directory open to a "
                            "container or a build step", "refuses WORKDIR under /proc in sources; an image "
                            "pulled as a base can still carry one"))
    return out


def engine_versions(engine: str, timeout: float = 30) -> Versions:
    """What the engine says about itself; fields it does not say stay empty."""
    name = Path(engine).name
    if name == "podman":
        info = _json([engine, "info", "--format", "json"], timeout)
        host = info.get("host") or {}
        runtime = host.get("ociRuntime") or {}
        version = (info.get("version") or {}).get("Version", "")
        return Versions("podman", str(version), str(host.get("buildahVersion", "")),
                        str(runtime.get("version", "")).replace("\n", " "))
    data = _json([engine, "version", "--format", "{{json .}}"], timeout)
    server = data.get("Server") or {}
    runc = next((c for c in server.get("Components") or [] if isinstance(c, dict) and c.get("Name") == "runc"), {})
    return Versions(name, str(server.get("Version", "")), "", str(runc.get("Version", "")))


def _json(argv: list[str], timeout: float) -> dict[str, Any]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        data = json.loads(proc.stdout or "{}")
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def log_known_escapes(engine: str, log: logging.Logger) -> list[Advisory]:
    """Ask the engine for its versions and log, as warnings, each known escape that applies."""
    versions = engine_versions(engine)
    found = known_escapes(versions)
    log.info("engine %s %s, builder %s, OCI runtime %s: %d known escape(s) apply", versions.engine,
             versions.engine_version or "?", versions.builder_version or "(BuildKit, by the engine's version)",
             versions.runtime_version or "?", len(found))
    for advisory in found:
        log.warning("known escape: %s", advisory.line())
    return found
