"""A short, bounded schemathesis run against a server that publishes /openapi.json.

schemathesis is an optional tool (a test dependency, not a runtime one), so it
is run as a separate command: the one next to this Python (a venv's bin/) or
the one on PATH. Only its `not_a_server_error` check is used: the contract
says nothing about status codes beyond "no 5xx on bad input". Bounded by
`--max-examples` and a wall-clock timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Optional, Union

from substratus.errors import tail
from substratus.verify.clauses import Outcome, Skipped
from substratus.verify.probe import HttpProbe, ProbeError

Fuzzer = Callable[[str, Path, int, float], Union[Outcome, Skipped]]
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def schemathesis_command() -> Optional[str]:
    beside = Path(sys.executable).parent / "schemathesis"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("schemathesis")


def schemathesis_argv(exe: str, schema_url: str, max_examples: int) -> list[str]:
    return [exe, "run", schema_url, "--checks", "not_a_server_error", "--max-examples", str(max_examples),
            "--workers", "1", "--no-shrink", "--generation-database", "none", "--no-color",
            "--request-timeout", "30", "--suppress-health-check", "all", "--seed", "1"]


def run_schemathesis(base_url: str, workdir: Path, max_examples: int, timeout: float) -> Union[Outcome, Skipped]:
    exe = schemathesis_command()
    if exe is None:
        return Skipped("schemathesis is not installed (pip install schemathesis to fuzz /openapi.json)")
    argv = schemathesis_argv(exe, f"{base_url}/openapi.json", max_examples)
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    shown = "schemathesis " + " ".join(argv[1:])
    try:
        proc = subprocess.run(argv, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        if "server error" in out.lower():
            return Outcome(False, f"ran `{shown}`: server errors seen before the {timeout:.0f}s limit",
                           log_tail=tail(out, 40))
        return Skipped(f"schemathesis did not finish within {timeout:.0f}s (the server is slow?); "
                       f"raise --fuzz-timeout to run it")
    summary = [ln.strip() for ln in proc.stdout.splitlines() if "generated" in ln or "issues found" in ln.lower()
               or "No issues" in ln]
    evidence = f"ran `{shown}`: exit {proc.returncode}" + (f"; {'; '.join(summary[-2:])}" if summary else "")
    if proc.returncode == 0:
        return Outcome(True, evidence)
    return Outcome(False, evidence, log_tail=tail(proc.stdout, 40))


def has_openapi(probe: HttpProbe, base_url: str, timeout: float) -> Optional[str]:
    """None when /openapi.json is there and is JSON; otherwise why not."""
    try:
        got = probe.request("GET", f"{base_url}/openapi.json", timeout=timeout)
    except ProbeError as err:
        return f"GET /openapi.json got no answer ({err})"
    if got.status != 200:
        return f"GET /openapi.json -> {got.status}: the server publishes no OpenAPI document to fuzz"
    try:
        doc = json.loads(got.body)
    except ValueError:
        return "GET /openapi.json -> 200 but the body is not JSON"
    if not isinstance(doc, dict) or "paths" not in doc:
        return "GET /openapi.json -> 200 but it is not an OpenAPI document (no \"paths\")"
    return None
