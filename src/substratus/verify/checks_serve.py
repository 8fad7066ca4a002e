"""Checks against a running server: serve.sh (docs, generate, bad bodies) and notebook.sh, on the contract's ports.

`start` publishes the container port on 127.0.0.1:<free port>; `wait_listening`
polls it; the request checks send one request each and judge the answer.
Containers are started through the session's TrackedRuntime, so they are
labelled and removed even when a check fails or the user presses Ctrl-C.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import islice
from typing import Any, Optional

from substratus import contract
from substratus.runtimes.base import RunSpec, Runtime, free_port
from substratus.verify.clauses import Outcome
from substratus.verify.probe import Clock, HttpProbe, ProbeError, wait_for_http

SERVE_PORT = contract.SERVER_PORT
NOTEBOOK_PORT = contract.NOTEBOOK_PORT
DOCS, GENERATE = contract.DOCS_PATH, contract.GENERATE_PATH
MALFORMED_BODY = b'{"prompt": "unterminated'


@dataclass
class Server:
    name: str
    script: str
    port: int           # container port
    host_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}"


def start(runtime: Runtime, image: str, script: str, port: int) -> Server:
    host_port = free_port()
    state = runtime.run(RunSpec(name="", image=image, command=[script], ports={port: host_port}))
    return Server(state.name, script, port, host_port)


def log_tail(runtime: Runtime, name: str, lines: int = 25) -> str:
    try:
        return "\n".join(islice(runtime.logs(name, tail=lines), lines))
    except Exception:  # noqa: BLE001 - a missing log must not hide the real finding
        return "(no logs: the container is gone)"


def wait_listening(runtime: Runtime, probe: HttpProbe, server: Server, timeout: float, clock: Clock) -> Outcome:
    def dead() -> str:
        state = runtime.container(server.name)
        if state is None:
            return f"the {server.script} container disappeared"
        if not state.running:
            return f"{server.script} exited (code {state.exit_code}) before anything answered on port {server.port}"
        return ""

    got = wait_for_http(probe, server.url + "/", timeout, dead=dead, clock=clock)
    mapping = f"127.0.0.1:{server.host_port} -> container port {server.port}"
    if got.ok:
        return Outcome(True, f"ran `{server.script}`; {got.detail} after {got.seconds:.1f}s ({mapping})")
    detail = got.detail
    if not dead():
        detail += (f"; the container is still running, so {server.script} probably listens on another port "
                   f"or on 127.0.0.1 only")
    return Outcome(False, f"ran `{server.script}` with {mapping}: {detail}",
                   log_tail=log_tail(runtime, server.name))


def _short(data: bytes, limit: int = 300) -> str:
    text = data.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + f"... ({len(data)} bytes)"


def check_docs(probe: HttpProbe, server: Server, timeout: float) -> Outcome:
    try:
        got = probe.request("GET", server.url + DOCS, timeout=timeout)
    except ProbeError as err:
        return Outcome(False, f"GET {DOCS} got no answer: {err}")
    kind = got.headers.get("content-type", "no content-type")
    evidence = f"GET {DOCS} -> {got.status} ({kind}, {len(got.body)} bytes)"
    if got.status != 200:
        return Outcome(False, f"{evidence}: {_short(got.body, 200)}")
    return Outcome(True, evidence)


def generate_request(prompt: str, max_new_tokens: int) -> bytes:
    return json.dumps({"prompt": prompt, "max_new_tokens": max_new_tokens}).encode()


def judge_generation(prompt: str, status: int, body: bytes) -> tuple[bool, str, str]:
    """(ok, what is wrong, how to fix it) for one /generate answer. Pure."""
    if status != 200:
        return False, f"status {status}, expected 200", ""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return False, "the body is not JSON", "answer with a JSON object (Content-Type: application/json)"
    if not isinstance(data, dict):
        return False, f"the body is JSON {type(data).__name__}, not an object", \
            "answer with an object: {\"generation\": \"<prompt><completion>\"}"
    gen = data.get("generation")
    if not isinstance(gen, str):
        return False, f"no string \"generation\" key (keys: {', '.join(sorted(data)) or 'none'})", \
            "put the text in a \"generation\" key: {\"generation\": \"<prompt><completion>\"}"
    if not gen.startswith(prompt):
        return False, f"\"generation\" does not start with the prompt {prompt!r}: {gen[:80]!r}", \
            "return the prompt followed by the completion (many tokenizers' decode drops or changes it: " \
            "prepend the original prompt string yourself)"
    return True, f"\"generation\" starts with the prompt and adds {len(gen) - len(prompt)} characters", ""


def check_generate(probe: HttpProbe, server: Server, prompt: str, max_new_tokens: int, timeout: float,
                   warmup: float = 0.0, clock: Optional[Clock] = None) -> Outcome:
    """One generation. A 503 ("still loading") is retried for up to `warmup` seconds:
    a server may listen (and serve /docs) before its model is loaded."""
    body = generate_request(prompt, max_new_tokens)
    sent = f"POST {GENERATE} {body.decode()}"
    clock = clock or Clock()
    deadline = clock.now() + warmup
    waited = ""
    while True:
        try:
            got = probe.request("POST", server.url + GENERATE, body=body,
                                headers={"Content-Type": "application/json"}, timeout=timeout)
        except ProbeError as err:
            return Outcome(False, f"{sent} got no answer: {err}")
        if got.status != 503 or clock.now() >= deadline:
            break
        waited = " (after retrying while it answered 503: model still loading)"
        clock.sleep(1.0)
    ok, why, fix = judge_generation(prompt, got.status, got.body)
    evidence = f"{sent}\n-> {got.status} {_short(got.body)}{waited}\n{why}"
    return Outcome(ok, evidence, fix=fix)


def check_bad_body(probe: HttpProbe, server: Server, timeout: float) -> Outcome:
    sent = f"POST {GENERATE} with the malformed body {MALFORMED_BODY.decode()!r}"
    try:
        got = probe.request("POST", server.url + GENERATE, body=MALFORMED_BODY,
                            headers={"Content-Type": "application/json"}, timeout=timeout)
    except ProbeError as err:
        return Outcome(False, f"{sent}: the connection broke ({err})")
    evidence = f"{sent} -> {got.status} {_short(got.body, 200)}"
    if 400 <= got.status < 500:
        return Outcome(True, evidence)
    if got.status >= 500:
        return Outcome(False, evidence + "\na 5xx means the server failed on input it should have refused")
    return Outcome(False, evidence + "\na malformed body was accepted",
                   fix="refuse bodies that are not valid JSON with 400 or 422")
