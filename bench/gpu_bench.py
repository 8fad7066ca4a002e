#!/usr/bin/env python3
"""The serving engine against Hugging Face ``generate`` on the same model, same batch.

Builds a GPT-2-small-shaped model (124M parameters) from a config with random
weights (nothing is downloaded), and a word-level tokenizer covering its whole
vocabulary. For 1, 16 and 64 requests of ``--prompt-tokens`` random prompt
tokens and ``--new-tokens`` new tokens each (end-of-sequence ignored), it
times ``model.generate`` (greedy, the batch at once) and the engine
(``substratus_ml.engine.BatchEngine``, all requests submitted at once), then
the same 64 requests arriving ``--stagger-ms`` apart, and prints each ratio
next to the goals of issue 10. Every configuration runs once untimed first
(CUDA graphs are captured then), and ``--repeats`` timed runs keep the best.

Then the mixed-adapter case of issue 23 (``--lora-adapters 4``, 0 skips it):
that many LoRA adapters of rank ``--lora-rank`` (random weights, on every
attention and MLP projection) are installed in the same engine, and 64
requests spread over them are timed against 64 requests on the base (goal:
>= 0.7x the base's tokens/s), with the time each install took and whether
greedy tokens of one adapter equal those of the same adapter merged into a
copy of the model's weights.

    python bench/gpu_bench.py                                  # on a CUDA machine
    python bench/gpu_bench.py --device cpu --model tiny        # anywhere, in a minute
    python bench/gpu_bench.py --dtypes float32,bfloat16 --cuda-graphs 1,0

Run it from the repository root with the ML package importable
(``pip install ./images/ml`` or ``PYTHONPATH=images/ml``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "images" / "ml"))

from substratus_ml.engine import BatchEngine, DoneEvent, EngineConfig, Event, SamplingParams  # noqa: E402
from substratus_ml.loading import LoadedModel  # noqa: E402
from substratus_ml.lora_bank import Adapter  # noqa: E402
from substratus_ml.peft_adapter import LoraModule, LoraWeights  # noqa: E402

SHAPES = {  # GPT2Config arguments
    "gpt2-small": {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257, "n_positions": 1024},
    "tiny": {"n_layer": 4, "n_embd": 128, "n_head": 4, "vocab_size": 4096, "n_positions": 256},
}
GOALS = {1: 3.0, 16: 2.0, 64: 2.0}  # engine / generate, on an H100 (issue 10)
STAGGER_GOAL = 0.9
LORA_GOAL = 0.7  # mixed adapters / base alone, tokens/s (issue 23)
LORA_MODULES = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def build(shape: str, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    config = GPT2Config(**SHAPES[shape], bos_token_id=0, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    model = GPT2LMHeadModel._from_config(config, attn_implementation="sdpa", dtype=dtype)
    model.to(device).eval()
    vocab = {f"w{i}": i for i in range(config.vocab_size)}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="w1"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="w0", pad_token="w0")
    return LoadedModel(model, tokenizer, "transformers", Path(f"random {shape}"))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def prompts(count: int, length: int, vocab: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(count)
    return torch.randint(1, vocab, (count, length), generator=generator).tolist()


@torch.inference_mode()
def hf_generate(loaded: LoadedModel, batch: list[list[int]], new_tokens: int) -> tuple[float, list[int]]:
    """Tokens/s of ``generate`` over the whole batch, and the first row's new tokens."""
    device = loaded.model.device
    ids = torch.tensor(batch, device=device)
    sync(device)
    started = time.perf_counter()
    out = loaded.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=0)
    sync(device)
    seconds = time.perf_counter() - started
    return len(batch) * new_tokens / seconds, out[0, ids.shape[1]:].tolist()


@dataclass
class EngineRun:
    tokens_per_s: float
    latencies: list[float]
    first_text: str


def engine_run(engine: BatchEngine, batch: list[list[int]], new_tokens: int,
               gap_s: float = 0.0, adapters: list[Adapter | None] | None = None) -> EngineRun:
    params = SamplingParams(new_tokens, ignore_eos=True)
    done = [threading.Event() for _ in batch]
    ended = [0.0] * len(batch)
    text = [""]

    def sink(index: int):  # type: ignore[no-untyped-def]
        def on(event: Event) -> None:
            if isinstance(event, DoneEvent):
                ended[index] = time.perf_counter()
                done[index].set()
            elif index == 0:
                text[0] += event.text
        return on

    starts = []
    first = time.perf_counter()
    for index, prompt in enumerate(batch):
        if gap_s and index:
            time.sleep(max(0.0, first + index * gap_s - time.perf_counter()))
        starts.append(time.perf_counter())
        engine.submit(prompt, params, sink(index), adapter=adapters[index] if adapters else None)
    for event in done:
        assert event.wait(600), "the engine did not finish"
    latencies = [end - start for start, end in zip(starts, ended)]
    return EngineRun(len(batch) * new_tokens / (max(ended) - first), latencies, text[0])


def best(runs: list[float]) -> float:
    return max(runs)


def bench_dtype(args: argparse.Namespace, device: torch.device, dtype: torch.dtype,
                graphs: bool) -> None:
    loaded = build(args.model, device, dtype)
    vocab = loaded.model.config.vocab_size
    config = EngineConfig(max_batch=max(args.requests), max_model_len=args.prompt_tokens + args.new_tokens + 1,
                          cuda_graphs=graphs)
    engine = BatchEngine(loaded, config)
    engine.start()
    label = f"{dtype}".replace("torch.", "") + (", CUDA graphs" if graphs and device.type == "cuda" else "")
    print(f"\n== {args.model} on {device} ({label}), {args.prompt_tokens} prompt + "
          f"{args.new_tokens} new tokens per request")
    print(f"{'requests':>8} {'generate tok/s':>15} {'engine tok/s':>13} {'ratio':>7} {'goal':>6}")
    try:
        at_once = {}
        for count in args.requests:
            batch = prompts(count, args.prompt_tokens, vocab)
            hf_generate(loaded, batch, args.new_tokens)  # warm-up
            engine_run(engine, batch, args.new_tokens)
            hf = best([hf_generate(loaded, batch, args.new_tokens)[0] for _ in range(args.repeats)])
            ours = best([engine_run(engine, batch, args.new_tokens).tokens_per_s for _ in range(args.repeats)])
            at_once[count] = ours
            goal = GOALS.get(count)
            verdict = "" if goal is None else ("met" if ours / hf >= goal else "NOT met")
            print(f"{count:>8} {hf:>15.0f} {ours:>13.0f} {ours / hf:>6.2f}x {goal or '':>5}x {verdict}")
        _staggered(args, engine, vocab, at_once)
        _same_tokens(args, loaded, engine, vocab)
        if args.lora_adapters:
            _mixed_adapters(args, loaded, engine, vocab)
    finally:
        engine.close()


def random_adapter(loaded: LoadedModel, name: str, rank: int, seed: int) -> LoraWeights:
    """A LoRA adapter on every projection, as read_adapter returns one (scaling folded in B)."""
    generator = torch.Generator().manual_seed(seed)
    param = next(loaded.model.parameters())
    modules = {}
    for layer in range(loaded.model.config.n_layer):
        for suffix in LORA_MODULES:
            name_in_model = f"transformer.h.{layer}.{suffix}"
            fan_in, fan_out = loaded.model.get_submodule(name_in_model).weight.shape
            a = torch.randn(fan_in, rank, generator=generator) / fan_in ** 0.5
            b = torch.randn(rank, fan_out, generator=generator) * 0.02
            modules[name_in_model] = LoraModule(a.to(param.device, param.dtype), b.to(param.device, param.dtype))
    return LoraWeights(name, Path(name), modules)


def _install(engine: BatchEngine, weights: LoraWeights) -> tuple[Adapter, float]:
    adapter = Adapter(weights.name, str(weights.path), weights.rank, len(weights.modules))
    started = time.perf_counter()
    engine.add_adapter(adapter, weights).result(timeout=120)
    return adapter, time.perf_counter() - started


def _mixed_adapters(args: argparse.Namespace, loaded: LoadedModel, engine: BatchEngine, vocab: int) -> None:
    """64 requests over N adapters against 64 on the base, same engine; install times; greedy check."""
    count = max(args.requests)
    installed = [_install(engine, random_adapter(loaded, f"lora{i}", args.lora_rank, seed=i))
                 for i in range(args.lora_adapters)]
    adapters = [adapter for adapter, _ in installed]
    batch = prompts(count, args.prompt_tokens, vocab)
    mixed: list[Adapter | None] = [adapters[i % len(adapters)] for i in range(count)]
    engine_run(engine, batch, args.new_tokens, adapters=mixed)  # warm-up (captures the LoRA graphs)
    engine_run(engine, batch, args.new_tokens)
    base_runs, mixed_runs = [], []
    for _ in range(args.repeats):  # alternating, so drift hits both alike
        base_runs.append(engine_run(engine, batch, args.new_tokens).tokens_per_s)
        mixed_runs.append(engine_run(engine, batch, args.new_tokens, adapters=mixed).tokens_per_s)
    ratio = best(mixed_runs) / best(base_runs)
    installs = ", ".join(f"{1000 * seconds:.0f}" for _, seconds in installed)
    print(f"{count} requests over {len(adapters)} LoRA adapters (rank {args.lora_rank}, "
          f"{adapters[0].modules} modules each): {best(mixed_runs):.0f} tok/s; "
          f"on the base alone: {best(base_runs):.0f} tok/s; ratio {ratio:.2f}x "
          f"(goal >= {LORA_GOAL}x: {'met' if ratio >= LORA_GOAL else 'NOT met'}); installs took {installs} ms")
    _same_as_merged(args, loaded, engine, vocab, adapters[0])


@torch.inference_mode()
def _same_as_merged(args: argparse.Namespace, loaded: LoadedModel, engine: BatchEngine, vocab: int,
                    adapter: Adapter) -> None:
    """One adapter's greedy tokens beside generate's on a copy of the model with it merged in."""
    import copy

    weights = random_adapter(loaded, adapter.name, args.lora_rank, seed=0)  # lora0's weights again
    merged = copy.deepcopy(loaded.model)
    for name, module in weights.modules.items():
        merged.get_submodule(name).weight += module.a @ module.b  # Conv1D: weight is [in, out]
    [prompt] = prompts(1, args.prompt_tokens, vocab)
    ids = torch.tensor([prompt], device=merged.device)
    out = merged.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                          max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, pad_token_id=0)
    theirs = [f"w{t}" for t in out[0, ids.shape[1]:].tolist()]
    ours = engine_run(engine, [prompt], args.new_tokens, adapters=[adapter]).first_text.split()
    agree = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), len(theirs))
    print(f"greedy tokens of {adapter.name} equal to its merged copy's: {agree}/{len(theirs)}")
    del merged


def _staggered(args: argparse.Namespace, engine: BatchEngine, vocab: int,
               at_once: dict[int, float]) -> None:
    count = max(args.requests)
    batch = prompts(count, args.prompt_tokens, vocab)
    engine_run(engine, batch, args.new_tokens, args.stagger_ms / 1000)  # warm-up (all batch buckets)
    runs = [engine_run(engine, batch, args.new_tokens, args.stagger_ms / 1000) for _ in range(args.repeats)]
    run = max(runs, key=lambda r: r.tokens_per_s)
    ratio = run.tokens_per_s / at_once[count]
    verdict = "met" if ratio >= STAGGER_GOAL else "NOT met"
    at_once_s = count * args.new_tokens / at_once[count]
    print(f"{count} requests {args.stagger_ms:g} ms apart: {run.tokens_per_s:.0f} tok/s = {ratio:.2f}x of "
          f"all at once (goal {STAGGER_GOAL}x: {verdict}); median latency "
          f"{statistics.median(run.latencies):.2f} s; all at once took {at_once_s:.2f} s, the last "
          f"request arrives after {(count - 1) * args.stagger_ms / 1000:.2f} s")


def _same_tokens(args: argparse.Namespace, loaded: LoadedModel, engine: BatchEngine, vocab: int) -> None:
    """Greedy output of the engine alone beside generate's (random weights: near-ties may differ)."""
    [prompt] = prompts(1, args.prompt_tokens, vocab)
    _, reference = hf_generate(loaded, [prompt], args.new_tokens)
    ours = engine_run(engine, [prompt], args.new_tokens).first_text.split()
    theirs = [f"w{t}" for t in reference]
    agree = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), len(theirs))
    print(f"greedy tokens equal to generate's: {agree}/{len(theirs)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--model", choices=sorted(SHAPES), default="gpt2-small")
    parser.add_argument("--requests", default="1,16,64", help="comma-separated batch sizes")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--stagger-ms", type=float, default=20.0)
    parser.add_argument("--dtypes", default="float32", help="comma-separated: float32,bfloat16,float16")
    parser.add_argument("--cuda-graphs", default="1", help="comma-separated 1/0 (CUDA only)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lora-adapters", type=int, default=4, help="mixed-adapter case (0: skip it)")
    parser.add_argument("--lora-rank", type=int, default=16)
    args = parser.parse_args()
    args.requests = [int(n) for n in args.requests.split(",")]
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; run with --device cpu --model tiny", file=sys.stderr)
        return 2
    import transformers

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{name}; torch {torch.__version__}, transformers {transformers.__version__}")
    for dtype_name in args.dtypes.split(","):
        for graphs in args.cuda_graphs.split(","):
            if graphs == "0" and device.type != "cuda":
                continue
            bench_dtype(args, device, getattr(torch, dtype_name), graphs == "1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
