"""Applying the contract's readiness rule (`contract.Readiness`) by HTTP, wherever it runs.

`probe` sends each check's GET and judges the answers by the rule. Two callers:

- the local backend (`local.probes`), through the host port that publishes the
  container's port;
- the readiness helper of Kubernetes pods. A kubelet's httpGet probe sends one
  GET and accepts 200-399; the server's rule has two GETs, one of them optional
  (`/readyz` where the server offers it), which no kubelet probe expresses. The
  generators (`runtimes.kubernetes.workloads`) therefore add a small container
  of the operator image to such a pod, running

      python -m substratus.runtimes.readiness --listen 9450 --get PORT/docs --get-optional PORT/readyz

  which answers `GET /` with 200 when the rule holds inside the pod and 503 (the
  statuses it saw) when not; the server container's readinessProbe is an httpGet
  on that port. So both backends apply the same rule, by the same code.

`helper_args` writes that command line and `main` reads it: one module, so the
two cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

from substratus.contract import DOCS_PATH, SERVER_PORT, HttpGet, Readiness
from substratus.runtimes.answers import status_line


def status_of(host: str, port: int, path: str, timeout: float) -> Optional[int]:
    """The HTTP status of GET host:port/path, or None when nothing answered in time. Only the status
    line is read, within `timeout` in all: a server that answers one byte a second or sends endless
    headers must not hold a reconcile worker (issue 25, `runtimes.answers`)."""
    return status_line(host, port, path, timeout)


def answers(readiness: Readiness, host: str, ports: Mapping[int, int]) -> list[Optional[int]]:
    """The status of each check's GET, in order; `ports` maps a container port to where it is
    reached from here. Stops at the first required check that fails (the rule cannot hold)."""
    got: list[Optional[int]] = []
    for check in readiness.checks:
        port = ports.get(check.port)
        status = status_of(host, port, check.path, readiness.timeout_seconds) if port else None
        got.append(status)
        if not check.passes(status) and not check.optional:
            break
    return got


def probe(readiness: Readiness, host: str, ports: Mapping[int, int]) -> bool:
    """Whether the rule holds now."""
    return readiness.ready(answers(readiness, host, ports))


# ---- the helper in a pod ---------------------------------------------------------------------------

def helper_args(readiness: Readiness, listen: int) -> list[str]:
    """The helper's arguments for `readiness` (after `python -m substratus.runtimes.readiness`)."""
    args = ["--listen", str(listen), "--timeout", f"{readiness.timeout_seconds:g}"]
    for check in readiness.checks:
        args += ["--get-optional" if check.optional else "--get", f"{check.port}{check.path}"]
    return args


def parse_args(argv: Sequence[str]) -> tuple[Readiness, int]:
    """The rule and the port to listen on, from `helper_args`' command line."""
    parser = argparse.ArgumentParser(prog="python -m substratus.runtimes.readiness",
                                     description="Answer a kubelet's readiness probe by the contract's rule.")
    parser.add_argument("--listen", type=int, required=True, help="port to answer GET / on")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds each GET may take")
    parser.add_argument("--get", action="append", default=[], metavar="PORT/PATH", help="a required GET")
    parser.add_argument("--get-optional", action="append", default=[], metavar="PORT/PATH",
                        help="a GET that also passes when the server has no such path (404, 405)")
    ns = parser.parse_args(list(argv))
    checks: list[HttpGet] = []
    for spec, optional in [*((g, False) for g in ns.get), *((g, True) for g in ns.get_optional)]:
        port, slash, path = spec.partition("/")
        if not port.isdigit() or not slash:
            parser.error(f"{spec!r}: give PORT/PATH, e.g. {SERVER_PORT}{DOCS_PATH}")
        checks.append(HttpGet("/" + path, int(port), optional=optional))
    if not checks:
        parser.error("give at least one --get")
    return Readiness(tuple(checks), timeout_seconds=ns.timeout), ns.listen


def serve(readiness: Readiness, listen: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A server answering GET / by the rule, applied to `host` (the pod's own network); the caller
    runs `serve_forever` (tests run it on a thread and shut it down)."""
    ports = {c.port: c.port for c in readiness.checks}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
            got = answers(readiness, host, ports)
            ok = readiness.ready(got)
            body = json.dumps({"ready": ok, "checks": [{"path": c.path, "port": c.port, "status": s}
                                                       for c, s in zip(readiness.checks, got)]}).encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # a probe every few seconds: no log line each
            pass

    return ThreadingHTTPServer(("0.0.0.0", listen), Handler)


def main(argv: Optional[Sequence[str]] = None) -> None:
    readiness, listen = parse_args(sys.argv[1:] if argv is None else argv)
    server = serve(readiness, listen)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
