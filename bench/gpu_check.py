"""GPU check of the reference images' ML code (run on a machine with a CUDA GPU).

Not a test: CI has no GPU. It shows that the code the example images run
uses a GPU when the orchestrator passes one through (compute.types: [GPU]):
init-tiny builds a model, `train` fine-tunes it on the GPU (loss must fall),
and the batching engine serves it from the GPU with batched greedy output
equal to unbatched. Prints what it saw; exits 1 on any mismatch.

    PYTHONPATH=images/ml python3 bench/gpu_check.py [--allow-cpu]

On a GPU the engine also captures its decode steps as CUDA graphs; a capture
that fails is reported on stderr ("CUDA graph capture failed") and the check
still compares batched with serial output, which must be equal either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from substratus_ml.engine import BatchEngine, DoneEvent, EngineConfig, SamplingParams, TextEvent
from substratus_ml.loading import load_model

WORDS = ("the king and the queen walked in the garden of the old castle while the bells rang and "
         "the people sang of summer and of the sea ").split()


def corpus(path: Path, lines: int) -> Path:
    import random

    rng = random.Random(0)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(lines)) + "\n")
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "substratus_ml.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    print(proc.stdout[-1500:], proc.stderr[-1500:], sep="\n")
    if proc.returncode != 0:
        raise SystemExit(f"substratus-ml {args[0]} failed with {proc.returncode}")
    return proc.stdout + proc.stderr


def generate_all(model_dir: Path, max_batch: int, prompts: list[str]) -> tuple[list[str], float, int]:
    loaded = load_model(model_dir)
    engine = BatchEngine(loaded, EngineConfig(max_batch=max_batch))
    texts = [""] * len(prompts)
    done = [threading.Event() for _ in prompts]

    def sink(i: int):  # type: ignore[no-untyped-def]
        def on(event: object) -> None:
            if isinstance(event, TextEvent):
                texts[i] += event.text
            elif isinstance(event, DoneEvent):
                done[i].set()
        return on

    for i, p in enumerate(prompts):
        engine.submit(loaded.tokenizer.encode(p), SamplingParams(max_new_tokens=48, ignore_eos=True), sink(i))
    started = time.perf_counter()
    engine.start()
    for d in done:
        assert d.wait(120)
    took = time.perf_counter() - started
    engine.close()
    return texts, took, engine.stats.largest_batch


def main() -> int:
    # Batched must equal serial token for token: that holds in float32. In bfloat16 (the
    # serving default on GPUs) kernels chosen per batch shape round differently, and a
    # near-tie can flip; SUBSTRATUS_DTYPE=bfloat16 runs the check that way anyway.
    os.environ.setdefault("SUBSTRATUS_DTYPE", "float32")
    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
    want = "cuda"
    if not torch.cuda.is_available():
        if "--allow-cpu" not in sys.argv:
            print("no CUDA GPU here (--allow-cpu runs the same steps on the CPU)")
            return 1
        want = "cpu"
    else:
        print(torch.cuda.get_device_name(0))
    work = Path(tempfile.mkdtemp())
    base = work / "saved"
    cli("init-tiny", "--corpus", str(corpus(work / "base.txt", 400)), "--out", str(base), "--steps", "30")
    data = work / "data.jsonl"
    data.write_text("".join(json.dumps({"text": line}) + "\n"
                            for line in corpus(work / "ft.txt", 300).read_text().splitlines()))
    out = cli("train", "--model-dir", str(base), "--out", str(work / "trained"), "--logs-dir", str(work / "logs"),
              env={"TRAIN_DATA_PATH": str(data), "TRAIN_EPOCHS": "2", "TRAIN_BATCH_SIZE": "8",
                   "TRAIN_DATA_LIMIT": "200"})
    metrics = json.loads((work / "logs" / "metrics.json").read_text())
    print("metrics:", metrics)
    ok = f" on {want}" in out and metrics["loss_after"] < metrics["loss_before"]  # "train: <Model> on cuda:0"
    loaded = load_model(work / "trained")
    print("served model device:", loaded.model.device, loaded.model.dtype)
    ok = ok and loaded.model.device.type == want
    prompts = [f"the {w}" for w in WORDS[:16]]
    batched, tb, largest = generate_all(work / "trained", 16, prompts)
    serial, ts, _ = generate_all(work / "trained", 1, prompts)
    same = batched == serial
    print(f"16 prompts x 48 tokens: batched {tb:.2f}s (largest batch {largest}), serial {ts:.2f}s, "
          f"ratio {ts / tb:.1f}x, batched == serial: {same}")
    print("sample:", prompts[0] + batched[0])
    ok = ok and same and largest == 16
    print("GPU CHECK", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
