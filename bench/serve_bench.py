#!/usr/bin/env python3
"""Benchmark the model server's dynamic batching: throughput and latency, on and off.

Starts ``substratus-ml serve`` twice on 127.0.0.1 against the same model, once
with ``SUBSTRATUS_MAX_BATCH=16`` (batching) and once with ``=1`` (one request
at a time), drives each with 1 and 16 concurrent clients sending a bounded
number of greedy ``/v1/completions`` requests of fixed ``max_tokens``, and
prints tokens/s and p50/p95 latency for each, then the batched/unbatched
throughput ratio at the highest concurrency.

    python bench/serve_bench.py [--model-dir DIR] [--max-new-tokens 64]
                                [--clients 1,16] [--requests-per-client 4]

Without ``--model-dir`` a tiny model is first made with ``substratus-ml init-tiny``.
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


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(model_dir: Path, mode: str, max_batch: int, clients_list: list[int],
            per_client: int, max_new_tokens: int) -> list[Figures]:
    process, url = start_server(model_dir, max_batch, max_new_tokens)
    try:
        asyncio.run(drive(url, 2, 2, 8))  # warm-up
        results = []
        for clients in clients_list:
            requests = clients * per_client
            tokens, seconds, latencies = asyncio.run(drive(url, clients, requests, max_new_tokens))
            results.append(Figures(mode, clients, requests, tokens, seconds,
                                   1000 * statistics.median(latencies),
                                   1000 * _percentile(latencies, 0.95)))
            print(_row(results[-1]), file=sys.stderr, flush=True)
        return results
    finally:
        process.terminate()
        process.wait(timeout=30)


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
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="substratus-bench-") as scratch:
        model_dir = args.model_dir or make_tiny_model(Path(scratch), args.init_steps)
        header = (f"{'mode':<10} {'clients':>7} {'requests':>8} {'tokens':>7} {'seconds':>8} "
                  f"{'tokens/s':>9} {'p50 ms':>9} {'p95 ms':>9}")
        print(header, file=sys.stderr)
        figures = []
        for mode, max_batch in (("batched", 16), ("unbatched", 1)):
            figures += measure(model_dir, mode, max_batch, clients, args.requests_per_client,
                               args.max_new_tokens)
    top = max(clients)
    speed = {f.mode: f.tokens_per_s for f in figures if f.clients == top}
    ratio = speed["batched"] / speed["unbatched"]
    if args.json:
        print(json.dumps({"figures": [{**f.__dict__, "tokens_per_s": f.tokens_per_s}
                                      for f in figures], "ratio_at_max_clients": ratio}, indent=2))
    else:
        print(header)
        for f in figures:
            print(_row(f))
        print(f"batched/unbatched throughput at {top} clients: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
