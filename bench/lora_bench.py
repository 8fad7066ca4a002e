#!/usr/bin/env python3
"""Benchmark many LoRA adapters on one server: mixed-adapter batches against the base alone.

Makes a tiny model (``substratus-ml init-tiny``) and four PEFT adapters of it
with ``peft`` (ranks 4, 8, 8 and 16 on ``c_attn`` and both ``c_proj``, random
non-zero B), then starts ``substratus-ml serve`` once (``SUBSTRATUS_MAX_BATCH=16``)
with two of them in its start-up directory (``SUBSTRATUS_ADAPTERS_DIR``) and
loads the other two through ``POST /v1/load_lora_adapter``: the load times of
both ways are printed. Then, on the same server, in alternating rounds:

- ``base``: 16 concurrent closed-loop clients on the base model;
- ``mixed``: 16 concurrent clients spread over the 4 adapters (4 each), so
  every decode step holds rows of 4 different adapters.

Each client sends ``--requests-per-client`` greedy ``/v1/completions`` of
``--max-new-tokens`` tokens (end of sequence ignored). The machine's speed
drifts with other work on it, so each round runs the two side by side (base
first, then mixed first in the next round) and the median of the rounds'
ratios is the figure, printed with the goal of issue 23 (mixed >= 0.7x the
base's tokens/s). The base rounds run with the adapters loaded (their hooks
in place, idle), as on a server that serves both.

Last, the cost of one decode step in this process, base against 4 adapters,
at 16 and 64 rows: CPU time of the thread (``time.thread_time``), which other
work on a shared machine disturbs far less than wall time.

    python bench/lora_bench.py [--model-dir DIR] [--rounds 8] [--requests-per-client 2]
                               [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_bench import PROMPTS, _cli, _free_port, make_tiny_model  # noqa: E402

GOAL = 0.7
RANKS = {"ada": 4, "bea": 8, "cid": 8, "dov": 16}
AT_STARTUP = ("ada", "bea")  # the other two are loaded over HTTP


def make_adapters(model_dir: Path, root: Path) -> dict[str, Path]:
    """Four PEFT adapters of the model, saved by peft (B random: they change the output)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    made = {}
    for seed, (name, rank) in enumerate(RANKS.items()):
        model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
        config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["c_attn", "c_proj"],
                            fan_in_fan_out=True, lora_dropout=0.0)
        peft_model = get_peft_model(model, config)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param_name, param in peft_model.named_parameters():
                if "lora_B" in param_name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
        made[name] = root / name
        peft_model.save_pretrained(made[name])
    return made


def start(model_dir: Path, adapters_dir: Path, max_new_tokens: int,
          log: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    """The server (its output into ``log``), its URL, and seconds from launch to ready
    (start-up adapters included)."""
    port = _free_port()
    env = {**os.environ, "SUBSTRATUS_MAX_BATCH": "16", "SUBSTRATUS_MAX_NEW_TOKENS": str(max_new_tokens),
           "SUBSTRATUS_ADAPTERS_DIR": str(adapters_dir)}
    launched = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(_cli() + ["serve", "--model-dir", str(model_dir), "--host", "127.0.0.1",
                                             "--port", str(port)], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = launched + 180
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; run it by hand: "
                               f"SUBSTRATUS_ADAPTERS_DIR={adapters_dir} substratus-ml serve --model-dir {model_dir}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url, time.perf_counter() - launched
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError("server did not become ready within 180 s")


def startup_lines(log: Path) -> list[str]:
    """The server's "adapter ... loaded" lines (it prints them before it is ready)."""
    text = log.read_text(errors="replace")
    return [line.strip() for line in text.splitlines() if line.startswith("adapter ")]


@dataclass(frozen=True)
class Round:
    mode: str
    tokens: int
    seconds: float
    p50_ms: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


async def drive(url: str, models: list[str | None], requests_each: int, max_new_tokens: int) -> Round:
    """One closed-loop client per entry of ``models`` (None: the base), all at once."""
    latencies: list[float] = []
    tokens = 0

    async def client_loop(client: httpx.AsyncClient, index: int, model: str | None) -> None:
        nonlocal tokens
        for turn in range(requests_each):
            body = {"prompt": PROMPTS[(index + turn) % len(PROMPTS)], "max_tokens": max_new_tokens,
                    "temperature": 0, "ignore_eos": True, **({"model": model} if model else {})}
            began = time.perf_counter()
            response = await client.post("/v1/completions", json=body)
            response.raise_for_status()
            latencies.append(time.perf_counter() - began)
            tokens += response.json()["usage"]["completion_tokens"]

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        started = time.perf_counter()
        await asyncio.gather(*[client_loop(client, i, m) for i, m in enumerate(models)])
        seconds = time.perf_counter() - started
    mode = "base" if not any(models) else "mixed"
    return Round(mode, tokens, seconds, 1000 * statistics.median(latencies))


def load_over_http(client: httpx.Client, name: str, path: Path) -> tuple[float, float]:
    """(seconds the request took, seconds the server reports for reading + installing).

    The client is made beforehand: making one (its TLS context) costs tens of ms."""
    began = time.perf_counter()
    response = client.post("/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(path)})
    took = time.perf_counter() - began
    response.raise_for_status()
    return took, float(response.json()["load_seconds"])


def step_costs(model_dir: Path, adapters: dict[str, Path], rows: int, steps: int = 20,
               repeats: int = 15) -> tuple[float, float]:
    """CPU ms of one decode step of ``rows`` rows: (base, rows spread over the adapters)."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "images" / "ml"))
    from substratus_ml.loading import load_model
    from substratus_ml.lora_bank import Adapter, LoraBank
    from substratus_ml.peft_adapter import read_adapter
    from substratus_ml.runner import ModelRunner

    torch.set_num_threads(1)
    loaded = load_model(model_dir)
    bank = LoraBank(loaded.model)
    with torch.inference_mode():
        for name, path in adapters.items():
            weights = read_adapter(name, path, loaded.model, 64)
            bank.install(Adapter(name, str(path), weights.rank, len(weights.modules)), weights)
        runner = ModelRunner(loaded.model, rows, 256, 0, False, bank)
        runner.prefill(0, [[5] * 48] * rows, [0.0] * rows, [1.0] * rows,
                       [1 + i % len(adapters) for i in range(rows)])
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(repeats):
            for lora in (False, True):
                began = time.thread_time()
                for _ in range(steps):
                    runner.decode(rows, 64, lora)
                times[lora].append(1000 * (time.thread_time() - began) / steps)
    bank.close()
    return statistics.median(times[False]), statistics.median(times[True])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--init-steps", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8,
                        help="(base, mixed) pairs, in alternating order; the median ratio is reported")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="substratus-lora-bench-") as scratch_name:
        scratch = Path(scratch_name)
        model_dir = args.model_dir or make_tiny_model(scratch, args.init_steps)
        made = make_adapters(model_dir, scratch / "made")
        startup_dir = scratch / "adapters"
        startup_dir.mkdir()
        for name in AT_STARTUP:
            made[name].rename(startup_dir / name)
            made[name] = startup_dir / name
        log = scratch / "server.log"
        process, url, ready_s = start(model_dir, startup_dir, args.max_new_tokens, log)
        try:
            at_start = startup_lines(log)
            with httpx.Client(base_url=url, timeout=120) as client:
                client.get("/v1/models").raise_for_status()  # connected
                over_http = {name: load_over_http(client, name, made[name])
                             for name in RANKS if name not in AT_STARTUP}
            report_loads(ready_s, at_start, over_http)
            pairs = run_rounds(url, args)
        finally:
            process.terminate()
            process.wait(timeout=30)
        costs = {rows: step_costs(model_dir, made, rows) for rows in (16, 64)}
    report(args, pairs)
    for rows, (base, mixed) in costs.items():
        print(f"one decode step of {rows} rows, CPU time: base {base:.2f} ms, over the {len(RANKS)} "
              f"adapters {mixed:.2f} ms ({base / mixed:.2f}x)")
    return 0


def run_rounds(url: str, args: argparse.Namespace) -> list[tuple[Round, Round]]:
    """(base, mixed) pairs, run base-mixed, mixed-base, ... so a drift in the machine's
    speed hits both sides alike."""
    names: list[str | None] = list(RANKS)
    base: list[str | None] = [None] * args.clients
    mixed = [names[i % len(names)] for i in range(args.clients)]
    asyncio.run(drive(url, base[:2] + mixed[:4], 1, 8))  # warm-up
    pairs = []
    for index in range(args.rounds):
        order = (base, mixed) if index % 2 == 0 else (mixed, base)
        done = {}
        for models in order:
            result = asyncio.run(drive(url, models, args.requests_per_client, args.max_new_tokens))
            done[result.mode] = result
            print(_row(result), file=sys.stderr, flush=True)
        pairs.append((done["base"], done["mixed"]))
    return pairs


def report_loads(ready_s: float, at_start: list[str], over_http: dict[str, tuple[float, float]]) -> None:
    print(f"server ready {ready_s:.2f} s after launch, with {len(AT_STARTUP)} start-up adapters:")
    for line in at_start:
        print(f"  {line}")
    for name, (took, server_side) in over_http.items():
        print(f"  POST /v1/load_lora_adapter {name} (rank {RANKS[name]}): {1000 * took:.0f} ms "
              f"round trip, {1000 * server_side:.0f} ms in the server (read, check, install)")


def _row(r: Round) -> str:
    return f"{r.mode:<6} {r.tokens:>7} {r.seconds:>8.2f} {r.tokens_per_s:>9.1f} {r.p50_ms:>8.0f}"


def report(args: argparse.Namespace, pairs: list[tuple[Round, Round]]) -> None:
    ratios = [mixed.tokens_per_s / base.tokens_per_s for base, mixed in pairs]
    ratio = statistics.median(ratios)
    rounds = [r for pair in pairs for r in pair]
    if args.json:
        print(json.dumps({"rounds": [{**r.__dict__, "tokens_per_s": r.tokens_per_s} for r in rounds],
                          "ratios": ratios, "median_ratio": ratio}, indent=2))
        return
    print(f"{'mode':<6} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'p50 ms':>8}")
    for r in rounds:
        print(_row(r))
    print(f"{args.clients} clients over {len(RANKS)} adapters (ranks {', '.join(map(str, RANKS.values()))}) / "
          f"{args.clients} clients on the base, tokens/s: {ratio:.2f}x (median of "
          f"{', '.join(f'{x:.2f}' for x in ratios)}; goal >= {GOAL}x: {'met' if ratio >= GOAL else 'NOT met'})")


if __name__ == "__main__":
    sys.exit(main())
