#!/usr/bin/env python3
"""Benchmark the model server's continuous batching: throughput and latency, on and off.

Starts ``substratus-ml serve`` twice on 127.0.0.1 against the same model, once
with ``SUBSTRATUS_MAX_BATCH=16`` (batching) and once with ``=1`` (one request
at a time), and on each:

1. drives it with 1 and 16 concurrent clients sending a bounded number of
   greedy ``/v1/completions`` requests of fixed ``max_tokens`` (tokens/s, p50
   and p95 latency);
2. sends requests arriving at random (a Poisson process, fixed seed) at a rate
   that would keep ``--poisson-load`` (3) requests in flight if each took as long
   as a lone request (a server taking one request at a time is then 3x
   overloaded: its queue grows without bound), and reports their median latency beside a lone request's
   (the median of 8 sent one after another just before the run and 8 just after:
   the machine's speed drifts with the other work on it). ``--poisson-rounds``
   (3) such runs are made, each with its own seed, and the one with the median
   ratio is reported; the unbatched server gets one run at the same rate.

Then it prints the two CPU goals of issue 10 beside the figures: batched
throughput at 16 clients >= 5x unbatched, and the median latency under
Poisson arrivals <= 1.5x a lone request's (both measured in this run).

    python bench/serve_bench.py [--model-dir DIR] [--max-new-tokens 64]
                                [--clients 1,16] [--requests-per-client 4]
                                [--poisson-requests 48] [--poisson-load 3] [--poisson-rounds 3]

Without ``--model-dir`` a tiny model is first made with ``substratus-ml init-tiny``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

PROMPTS = ["The meaning of life is", "Once upon a time", "A journey of a thousand miles",
           "The quick brown fox", "All that glitters", "Time flies like", "Never put off",
           "The early bird"]
FORTUNES = Path("/usr/share/games/fortunes")


@dataclass(frozen=True)
class Figures:
    mode: str
    clients: int
    requests: int
    tokens: int
    seconds: float
    p50_ms: float
    p95_ms: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def _cli() -> list[str]:
    found = shutil.which("substratus-ml")
    return [found] if found else [sys.executable, "-m", "substratus_ml.cli"]


def make_tiny_model(directory: Path, steps: int) -> Path:
    corpus = [p for p in sorted(FORTUNES.glob("*")) if p.is_file() and not p.suffix]
    if not corpus:
        corpus = [directory / "corpus.txt"]
        corpus[0].write_text("\n\n".join(PROMPTS * 50))
    out = directory / "saved"
    argv = _cli() + ["init-tiny", "--out", str(out), "--steps", str(steps)]
    for path in corpus:
        argv += ["--corpus", str(path)]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model_dir: Path, max_batch: int, max_new_tokens: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "SUBSTRATUS_MAX_BATCH": str(max_batch),
           "SUBSTRATUS_MAX_NEW_TOKENS": str(max(max_new_tokens, 64))}
    process = subprocess.Popen(_cli() + ["serve", "--model-dir", str(model_dir), "--host",
                                         "127.0.0.1", "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; run it by hand: "
                               f"substratus-ml serve --model-dir {model_dir}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError("server did not become ready within 180 s")


async def drive(url: str, clients: int, requests: int, max_new_tokens: int
                ) -> tuple[int, float, list[float]]:
    """Send ``requests`` completions from ``clients`` concurrent loops; tokens, wall, latencies."""
    latencies: list[float] = []
    tokens = 0
    counter = iter(range(requests))

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal tokens
        for index in counter:
            body = {"prompt": PROMPTS[index % len(PROMPTS)], "max_tokens": max_new_tokens,
                    "temperature": 0, "ignore_eos": True}
            started = time.perf_counter()
            response = await client.post("/v1/completions", json=body)
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)
            tokens += response.json()["usage"]["completion_tokens"]

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        started = time.perf_counter()
        await asyncio.gather(*[client_loop(client) for _ in range(clients)])
        return tokens, time.perf_counter() - started, latencies


async def poisson(url: str, count: int, rate: float, max_new_tokens: int, seed: int = 0) -> list[float]:
    """Latencies of ``count`` requests whose arrivals form a Poisson process of ``rate``/s."""
    rng = random.Random(seed)
    offsets, now = [], 0.0
    for _ in range(count):
        now += rng.expovariate(rate)
        offsets.append(now)

    async def one(client: httpx.AsyncClient, index: int, start: float) -> float:
        await asyncio.sleep(max(0.0, start + offsets[index] - time.perf_counter()))
        began = time.perf_counter()
        body = {"prompt": PROMPTS[index % len(PROMPTS)], "max_tokens": max_new_tokens,
                "temperature": 0, "ignore_eos": True}
        response = await client.post("/v1/completions", json=body)
        response.raise_for_status()
        return time.perf_counter() - began

    async with httpx.AsyncClient(base_url=url, timeout=600,
                                 limits=httpx.Limits(max_connections=count)) as client:
        start = time.perf_counter()
        return list(await asyncio.gather(*[one(client, i, start) for i in range(count)]))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class PoissonFigures:
    mode: str
    rate: float
    requests: int
    p50_ms: float
    p95_ms: float
    lone_ms: float  # median latency of a request alone, just before and just after


async def lone(url: str, count: int, max_new_tokens: int) -> float:
    """Median latency (ms) of ``count`` requests sent one after another."""
    _, _, latencies = await drive(url, 1, count, max_new_tokens)
    return 1000 * statistics.median(latencies)


def measure(model_dir: Path, mode: str, max_batch: int, args: argparse.Namespace,
            rate: float | None) -> tuple[list[Figures], PoissonFigures | None]:
    """Closed-loop figures per client count, then the Poisson run (at ``rate``, or at the
    rate this server's lone latency gives when ``rate`` is None)."""
    process, url = start_server(model_dir, max_batch, args.max_new_tokens)
    try:
        asyncio.run(drive(url, 2, 2, 8))  # warm-up
        results = []
        for clients in args.clients:
            requests = clients * args.requests_per_client
            tokens, seconds, latencies = asyncio.run(drive(url, clients, requests, args.max_new_tokens))
            results.append(Figures(mode, clients, requests, tokens, seconds,
                                   1000 * statistics.median(latencies),
                                   1000 * _percentile(latencies, 0.95)))
            print(_row(results[-1]), file=sys.stderr, flush=True)
        rounds = [_poisson_round(url, mode, args, rate, seed) for seed in range(rounds_for(mode, args))]
        for arrivals in rounds:
            print(_poisson_row(arrivals), file=sys.stderr, flush=True)
        # The round whose latency ratio is the median of all rounds.
        middle = sorted(rounds, key=lambda r: r.p50_ms / r.lone_ms)[len(rounds) // 2]
        return results, middle
    finally:
        process.terminate()
        process.wait(timeout=30)


def rounds_for(mode: str, args: argparse.Namespace) -> int:
    # One round for the unbatched server: it is there to show the contrast, and it is slow.
    return args.poisson_rounds if mode == "batched" else 1


def _poisson_round(url: str, mode: str, args: argparse.Namespace, rate: float | None,
                   seed: int) -> PoissonFigures:
    """One Poisson run between two lone-latency measurements.

    The machine's speed drifts (other work on it), so the lone latency a run is
    compared with is measured right before it and right after it.
    """
    before = asyncio.run(lone(url, 8, args.max_new_tokens))
    rate = rate if rate is not None else args.poisson_load / (before / 1000)
    latencies = asyncio.run(poisson(url, args.poisson_requests, rate, args.max_new_tokens, seed))
    after = asyncio.run(lone(url, 8, args.max_new_tokens))
    return PoissonFigures(mode, rate, len(latencies), 1000 * statistics.median(latencies),
                          1000 * _percentile(latencies, 0.95), (before + after) / 2)


def _poisson_row(p: PoissonFigures) -> str:
    return (f"{p.mode:<10} Poisson {p.rate:.1f} requests/s x {p.requests}: "
            f"p50 {p.p50_ms:.0f} ms, p95 {p.p95_ms:.0f} ms (alone: {p.lone_ms:.0f} ms)")


def _row(f: Figures) -> str:
    return (f"{f.mode:<10} {f.clients:>7} {f.requests:>8} {f.tokens:>7} {f.seconds:>8.2f} "
            f"{f.tokens_per_s:>9.1f} {f.p50_ms:>9.0f} {f.p95_ms:>9.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--init-steps", type=int, default=100,
                        help="pre-training steps when a tiny model is made")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--clients", default="1,16", help="comma-separated concurrency levels")
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--poisson-requests", type=int, default=48)
    parser.add_argument("--poisson-rounds", type=int, default=3,
                        help="Poisson runs on the batched server; the median ratio is reported")
    parser.add_argument("--poisson-load", type=float, default=3.0,
                        help="arrival rate x lone-request latency (mean requests in flight)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="substratus-bench-") as scratch:
        model_dir = args.model_dir or make_tiny_model(Path(scratch), args.init_steps)
        print(HEADER, file=sys.stderr)
        batched, batched_poisson = measure(model_dir, "batched", 16, args, None)
        assert batched_poisson is not None
        # The unbatched server gets the same arrivals, to show what batching buys.
        unbatched, unbatched_poisson = measure(model_dir, "unbatched", 1, args, batched_poisson.rate)
    report(args, batched + unbatched, [batched_poisson, unbatched_poisson])
    return 0


HEADER = (f"{'mode':<10} {'clients':>7} {'requests':>8} {'tokens':>7} {'seconds':>8} "
          f"{'tokens/s':>9} {'p50 ms':>9} {'p95 ms':>9}")


def report(args: argparse.Namespace, figures: list[Figures], arrivals: list[PoissonFigures | None]) -> None:
    top = max(args.clients)
    speed = {f.mode: f.tokens_per_s for f in figures if f.clients == top}
    ratio = speed["batched"] / speed["unbatched"]
    batched = arrivals[0]
    assert batched is not None
    lone_ms = batched.lone_ms
    latency_ratio = batched.p50_ms / lone_ms
    if args.json:
        print(json.dumps({"figures": [{**f.__dict__, "tokens_per_s": f.tokens_per_s} for f in figures],
                          "poisson": [a.__dict__ for a in arrivals if a is not None],
                          "ratio_at_max_clients": ratio, "poisson_p50_over_lone": latency_ratio},
                         indent=2))
        return
    print(HEADER)
    for f in figures:
        print(_row(f))
    for a in arrivals:
        if a is not None:
            print(_poisson_row(a))
    print(f"batched/unbatched throughput at {top} clients: {ratio:.2f}x "
          f"(goal >= 5x: {'met' if ratio >= 5 else 'NOT met'})")
    print(f"Poisson arrivals ({batched.rate:.1f}/s, {args.poisson_load:g} in flight on average at the "
          f"lone latency): median {batched.p50_ms:.0f} ms = {latency_ratio:.2f}x a lone request's "
          f"{lone_ms:.0f} ms (goal <= 1.5x: {'met' if latency_ratio <= 1.5 else 'NOT met'})")


if __name__ == "__main__":
    sys.exit(main())
