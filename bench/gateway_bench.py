#!/usr/bin/env python3
"""Benchmark the gateway (issue 21): what a hop through it costs, and whether it holds 200 streams.

Starts a real ``substratus-ml serve`` on a tiny model (made with ``init-tiny``
unless ``--model-dir`` is given) and the gateway in a process of its own in
front of it (uvicorn, API keys on, as it will be served), then measures, in the
same run, straight to the server (A) and through the gateway (B) in turns
A B A B ..., so that the machine's drift hits both alike:

1. tokens/s with 16 concurrent clients, whole answers and streamed (goal: B/A >= 0.95,
   the median of the round-by-round ratios), twice: 16 straight then 16 through the
   gateway, round after round; and 8 straight + 8 through the gateway in the same
   window, which the machine's drift cannot tell apart;
2. the median latency of a 4-token request, one client, requests A B A B ... (goal: B - A < 3 ms);
3. the median time to the first streamed chunk, the same way (goal: B - A < 3 ms);

then 200 concurrent streaming clients across 4 fake upstreams (one process,
four ports) for ``--soak-seconds``: goal 0 errors; the gateway's memory (RSS,
peak) is printed. Each figure is printed with its goal and met / NOT met.

    .venv/bin/python bench/gateway_bench.py [--model-dir DIR] [--rounds 5] [--seconds 4] [--stack auto,auto]
        [--latency-requests 150] [--streams 200] [--upstreams 4] [--soak-seconds 20]

Needs the ML package's environment for the real server (``make venv-ml``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
CORPUS = ("The quick brown fox jumps over the lazy dog.\nA journey of a thousand miles begins with a single step.\n"
          "All that glitters is not gold; all who wander are not lost.\n") * 40
PROMPT = "The quick brown fox"


# -- the processes ----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ml_cli() -> list[str]:
    local = REPO / ".venv-ml" / "bin" / "substratus-ml"
    found = shutil.which("substratus-ml") or (str(local) if local.exists() else None)
    if not found:
        sys.exit("substratus-ml is not installed: run `make venv-ml` first")
    return [found]


def _wait_ready(url: str, process: subprocess.Popen[bytes], path: str, what: str) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{what} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + path, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    sys.exit(f"{what} was not ready within 180 s")


def start_model_server(model_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(_ml_cli() + ["serve", "--model-dir", str(model_dir), "--host", "127.0.0.1",
                                            "--port", str(port), "--model-name", "tiny", "--max-batch", "16"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, process, "/readyz", "the model server")
    return process, url


def start_gateway(work: Path, models: dict[str, list[str]], stack: str = "auto,auto"
                  ) -> tuple[subprocess.Popen[bytes], str, str]:
    from substratus.gateway import KeyStore

    n = len(list(work.glob("gateway-*")))
    key = KeyStore(work / f"keys-{n}").create("bench").key
    config = work / f"gateway-{n}.json"
    config.write_text(json.dumps({"keys": str(work / f"keys-{n}"), "models": models}))
    port = _free_port()
    process = subprocess.Popen([sys.executable, __file__, "_gateway", str(config), str(port), stack])
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, process, "/healthz", "the gateway")
    return process, url, key


def start_fake_upstreams(count: int) -> tuple[subprocess.Popen[bytes], list[str]]:
    ports = [_free_port() for _ in range(count)]
    process = subprocess.Popen([sys.executable, __file__, "_upstreams", ",".join(map(str, ports))])
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    for url in urls:
        _wait_ready(url, process, "/readyz", "the fake upstreams")
    return process, urls


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


# -- the roles run in child processes ---------------------------------------------
class StaticBackends:
    """A fixed set of running models: what the bench needs of a Backends."""

    def __init__(self, models: dict[str, list[str]]) -> None:
        from substratus.gateway import ModelInfo, ModelState, Replica

        self.infos = [ModelInfo(m, ModelState.RUNNING) for m in models]
        self.sets = {m: [Replica(f"{m}-{i}", u) for i, u in enumerate(urls)] for m, urls in models.items()}

    async def models(self) -> Sequence[Any]:
        return self.infos

    def replicas(self, model: str) -> Sequence[Any]:
        from substratus.gateway import UnknownModel

        if model not in self.sets:
            raise UnknownModel(model)
        return self.sets[model]

    async def wake(self, model: str, *, wait: float) -> Sequence[Any]:
        return self.sets[model]

    def report(self, model: str, load: Any) -> None:
        pass


def serve_gateway(config_path: str, port: str, stack: str) -> None:
    import uvicorn

    from substratus.gateway import Gateway, KeyStore

    config = json.loads(Path(config_path).read_text())
    app = Gateway(StaticBackends(config["models"]), keys=KeyStore(Path(config["keys"])))
    http, loop = stack.split(",")
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning", access_log=False,
                http=http, loop=loop)


def serve_fake_upstreams(ports: str) -> None:
    """OpenAI-shaped servers that answer at once: a stream is `max_tokens` events `delay` s apart
    (`delay`, an extension field of the bench's, defaults to 0)."""
    import uvicorn

    chunk = b'data: {"id":"c","object":"text_completion","created":1,"model":"m","choices":[{"index":0,' \
            b'"text":" tok","finish_reason":null,"logprobs":null}]}\n\n'
    whole = b'{"id":"c","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" a b c d",' \
            b'"finish_reason":"length","logprobs":null}],"usage":{"prompt_tokens":2,"completion_tokens":4,"total_tokens":6}}'

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/readyz":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        if not request.get("stream"):
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json"),
                                                                                  (b"content-length", str(len(whole)).encode())]})
            await send({"type": "http.response.body", "body": whole})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        pause = float(request.get("delay", 0))
        for _ in range(int(request.get("max_tokens", 16))):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(pause)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def all_servers() -> None:
        servers = [uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=int(p), log_level="warning",
                                                 access_log=False, lifespan="off", backlog=4096))
                   for p in ports.split(",")]
        await asyncio.gather(*(s.serve() for s in servers))

    asyncio.run(all_servers())


# -- the clients ------------------------------------------------------------------
@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    model: str = "tiny"


async def _tokens_whole(session: aiohttp.ClientSession, t: Target, max_tokens: int) -> int:
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0}
    async with session.post(t.url + "/v1/completions", json=body, headers=t.headers) as r:
        data = await r.json()
        return int(data["usage"]["completion_tokens"])


async def _tokens_streamed(session: aiohttp.ClientSession, t: Target, max_tokens: int) -> int:
    body = {"model": "tiny", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
            "ignore_eos": True, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    tokens = 0
    async with session.post(t.url + "/v1/chat/completions", json=body, headers=t.headers) as r:
        async for line in r.content:
            if line.startswith(b"data: {") and b'"usage":{' in line:
                tokens = int(json.loads(line[6:])["usage"]["completion_tokens"])
    return tokens


async def throughput(t: Target, clients: int, seconds: float, max_tokens: int, streamed: bool) -> float:
    one = _tokens_streamed if streamed else _tokens_whole
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        start = time.perf_counter()
        end = start + seconds

        async def client() -> int:
            total = 0
            while time.perf_counter() < end:
                total += await one(session, t, max_tokens)
            return total

        tokens = sum(await asyncio.gather(*(client() for _ in range(clients))))
        return tokens / (time.perf_counter() - start)


async def mixed_throughput(a: Target, b: Target, clients: int, seconds: float, max_tokens: int,
                           streamed: bool) -> tuple[float, float]:
    """Half the clients straight, half through the gateway, in the same window: (A, B) tokens/s."""
    one = _tokens_streamed if streamed else _tokens_whole
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        start = time.perf_counter()
        end = start + seconds

        async def client(t: Target) -> int:
            total = 0
            while time.perf_counter() < end:
                total += await one(session, t, max_tokens)
            return total

        counts = await asyncio.gather(*(client(a if i % 2 else b) for i in range(clients)))
        took = time.perf_counter() - start
        return sum(counts[1::2]) / took, sum(counts[0::2]) / took


async def latency(session: aiohttp.ClientSession, t: Target, first_chunk: bool) -> float:
    """Seconds to the whole answer of a 4-token request, or to the first chunk of its stream."""
    body: dict[str, Any] = {"model": t.model, "prompt": PROMPT, "max_tokens": 4, "ignore_eos": True,
                            "temperature": 0, "stream": first_chunk}
    start = time.perf_counter()
    async with session.post(t.url + "/v1/completions", json=body, headers=t.headers) as r:
        if first_chunk:
            await r.content.readany()
            took = time.perf_counter() - start
            await r.read()
            return took
        await r.read()
        return time.perf_counter() - start


async def alternating_latencies(a: Target, b: Target, count: int, first_chunk: bool) -> tuple[list[float], list[float]]:
    """One client per path on kept-alive connections, requests A B A B ... so drift hits both alike."""
    async with aiohttp.ClientSession() as sa, aiohttp.ClientSession() as sb:
        for _ in range(5):  # warm both paths and their connections
            await latency(sa, a, first_chunk)
            await latency(sb, b, first_chunk)
        direct, via = [], []
        for _ in range(count):
            direct.append(await latency(sa, a, first_chunk))
            via.append(await latency(sb, b, first_chunk))
        return direct, via


async def soak(url: str, key: str, models: list[str], streams: int, seconds: float, events: int,
               delay: float) -> dict[str, int]:
    counts = {"streams": 0, "events": 0, "errors": 0}
    headers = {"Authorization": f"Bearer {key}"}
    end = time.perf_counter() + seconds
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def client(i: int) -> None:
            body = {"model": models[i % len(models)], "prompt": "x", "stream": True, "max_tokens": events,
                    "delay": delay}
            while time.perf_counter() < end:
                try:
                    done = False
                    async with session.post(url + "/v1/completions", json=body, headers=headers) as r:
                        if r.status != 200:
                            counts["errors"] += 1
                            continue
                        async for line in r.content:
                            if line.startswith(b"data: [DONE]"):
                                done = True
                            elif b'"error"' in line:
                                counts["errors"] += 1
                            elif line.startswith(b"data: "):
                                counts["events"] += 1
                    counts["streams"] += 1
                    counts["errors"] += 0 if done else 1
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    counts["errors"] += 1

        await asyncio.gather(*(client(i) for i in range(streams)))
    return counts


# -- the report -------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alternate(rounds: int, run: Callable[[Target], Coroutine[Any, Any, float]], a: Target, b: Target,
              server: int) -> list[tuple[float, float, float, float]]:
    """(A tokens/s, B tokens/s, A tokens per server CPU-second, B tokens per server CPU-second) per round."""
    rows: list[tuple[float, float, float, float]] = []
    for _ in range(rounds):
        figures = []
        for target in (a, b):
            before, start = cpu_seconds(server), time.perf_counter()
            rate = asyncio.run(run(target))
            used = cpu_seconds(server) - before
            figures.append((rate, rate * (time.perf_counter() - start) / max(used, 1e-3)))
        rows.append((figures[0][0], figures[1][0], figures[0][1], figures[1][1]))
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one throughput phase")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per throughput request")
    parser.add_argument("--latency-requests", type=int, default=150, help="per target and kind, in blocks")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--upstreams", type=int, default=4)
    parser.add_argument("--soak-seconds", type=float, default=20.0)
    parser.add_argument("--soak-events", type=int, default=20, help="events per soak stream")
    parser.add_argument("--soak-delay", type=float, default=0.1, help="seconds between a soak stream's events")
    parser.add_argument("--stack", default="auto,auto",
                        help="uvicorn's http and loop for the gateway, e.g. h11,asyncio or httptools,uvloop "
                             "(auto: the fast ones when installed, as uvicorn chooses)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        return run_all(args, Path(tmp))


def run_all(args: argparse.Namespace, work: Path) -> int:
    model_dir = args.model_dir or make_tiny_model(work)
    server, direct_url = start_model_server(model_dir)
    try:
        gateway, gateway_url, key = start_gateway(work, {"tiny": [direct_url]}, args.stack)
    except BaseException:
        stop(server)
        raise
    a, b = Target("direct", direct_url), Target("gateway", gateway_url, {"Authorization": f"Bearer {key}"})
    http, loop = args.stack.split(",")
    http = _impl("httptools", "h11") if http == "auto" else http
    loop = _impl("uvloop", "asyncio") if loop == "auto" else loop
    print(f"# gateway bench: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, gateway on uvicorn "
          f"http={http} loop={loop}; A = straight to substratus-ml serve (tiny model), B = via the gateway",
          flush=True)
    met = True
    try:
        for streamed in (False, True):
            met &= throughput_figures(args, a, b, streamed, server.pid)
        met &= latency_figures(args, a, b)
    finally:
        stop(gateway)
        stop(server)
    met &= soak_run(args, work)
    print(f"# all goals {'met' if met else 'NOT met'} (load average now {os.getloadavg()[0]:.1f})")
    return 0 if met else 1


def throughput_figures(args: argparse.Namespace, a: Target, b: Target, streamed: bool, server: int) -> bool:
    """Two designs, both printed: 16 clients straight then 16 through the gateway, round after round
    (what the goal names, but the machine's drift between rounds shows in it), and 8 + 8 clients
    in the same window (both paths see the same machine and the same server batch)."""
    kind = "streamed" if streamed else "whole answers"
    rows = alternate(args.rounds, lambda t: throughput(t, 16, args.seconds, args.max_tokens, streamed), a, b, server)
    ratio = statistics.median(r[1] / r[0] for r in rows)
    print(f"tokens/s, 16 clients, {kind}, A then B: direct {statistics.median(r[0] for r in rows):.0f}, "
          f"gateway {statistics.median(r[1] for r in rows):.0f}, ratio {ratio:.3f}x "
          f"(rounds {', '.join(f'{r[1] / r[0]:.3f}' for r in rows)}); goal >= 0.95x: {verdict(ratio >= 0.95)} "
          "(drifts with the machine's other work between rounds: shown, not counted)", flush=True)
    per_cpu = statistics.median(r[3] / r[2] for r in rows)
    print(f"  the same rounds per CPU-second the model server got: direct {statistics.median(r[2] for r in rows):.0f}, "
          f"gateway {statistics.median(r[3] for r in rows):.0f} tokens, ratio {per_cpu:.3f}x "
          f"(rounds {', '.join(f'{r[3] / r[2]:.3f}' for r in rows)}; not a goal: shows whether the drift was the "
          "server's share of the CPU)", flush=True)
    mixed = [asyncio.run(mixed_throughput(a, b, 16, args.seconds, args.max_tokens, streamed))
             for _ in range(args.rounds)]
    same = statistics.median(vb / va for va, vb in mixed)
    print(f"tokens/s, 16 clients, {kind}, 8 straight + 8 via the gateway at once: direct "
          f"{statistics.median(m[0] for m in mixed):.0f}, gateway {statistics.median(m[1] for m in mixed):.0f}, "
          f"ratio {same:.3f}x (rounds {', '.join(f'{vb / va:.3f}' for va, vb in mixed)}); goal >= 0.95x: "
          f"{verdict(same >= 0.95)}", flush=True)
    return same >= 0.95


def latency_figures(args: argparse.Namespace, a: Target, b: Target, upstream: str = "") -> bool:
    """One client, requests alternating A B A B so that drift hits both alike; medians."""
    met = True
    for first_chunk, label in ((False, f"median latency, 4-token request{upstream}"),
                               (True, f"median time to first streamed chunk{upstream}")):
        direct, via = asyncio.run(alternating_latencies(a, b, args.latency_requests, first_chunk))
        da, db = statistics.median(direct), statistics.median(via)
        added = (db - da) * 1000
        print(f"{label}: direct {da * 1000:.2f} ms, gateway {db * 1000:.2f} ms, added {added:.2f} ms "
              f"({args.latency_requests} each); goal < 3 ms: {verdict(added < 3)}", flush=True)
        met &= added < 3
    return met


def soak_run(args: argparse.Namespace, work: Path) -> bool:
    fakes, urls = start_fake_upstreams(args.upstreams)
    models = {f"m{i}": [url] for i, url in enumerate(urls)}
    try:
        gateway, url, key = start_gateway(work, models, args.stack)
    except BaseException:
        stop(fakes)
        raise
    try:
        idle, _ = rss_kib(gateway.pid)
        latency_figures(args, Target("direct", urls[0], model="m0"),
                        Target("gateway", url, {"Authorization": f"Bearer {key}"}, "m0"),
                        ", instant fake upstream (the hop alone)")
        started = time.perf_counter()
        counts = asyncio.run(soak(url, key, list(models), args.streams, args.soak_seconds, args.soak_events,
                                  args.soak_delay))
        took = time.perf_counter() - started
        rss, peak = rss_kib(gateway.pid)
    finally:
        stop(gateway)
        stop(fakes)
    ok = counts["errors"] == 0 and counts["streams"] > 0
    print(f"{args.streams} streaming clients over {args.upstreams} upstreams for {took:.0f} s: "
          f"{counts['streams']} streams, {counts['events']} events ({counts['events'] / took:.0f}/s), "
          f"{counts['errors']} errors; goal 0 errors: {verdict(ok)}")
    print(f"gateway memory: {idle / 1024:.1f} MiB idle, {rss / 1024:.1f} MiB after, peak {peak / 1024:.1f} MiB")
    return ok


def make_tiny_model(work: Path) -> Path:
    (work / "corpus.txt").write_text(CORPUS)
    out = work / "saved"
    subprocess.run(_ml_cli() + ["init-tiny", "--corpus", str(work / "corpus.txt"), "--out", str(out), "--steps", "20",
                                "--vocab-size", "400", "--n-layer", "2", "--n-embd", "64", "--n-head", "2",
                                "--n-positions", "256"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return out


def _impl(fast: str, fallback: str) -> str:
    try:
        __import__(fast)
        return fast
    except ImportError:
        return fallback


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_gateway":
        serve_gateway(*sys.argv[2:5])
    elif len(sys.argv) > 1 and sys.argv[1] == "_upstreams":
        serve_fake_upstreams(sys.argv[2])
    else:
        sys.exit(main(sys.argv[1:]))
