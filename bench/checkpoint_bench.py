#!/usr/bin/env python3
"""Benchmark the trainer's checkpoints: training time with and without them, at the default interval.

Makes a model shaped like the demo's (``examples/models/tiny-gpt``: ``init-tiny``'s
defaults, 4 layers of 128, vocabulary 4096; its weights are not pre-trained,
which changes nothing in the time a step or a checkpoint takes) and a dataset,
then runs ``substratus-ml train`` as ``train.sh`` does, in pairs: once without a
checkpoint directory and once with one, at the default interval
(``checkpointSteps``/``checkpointSeconds`` unset), with the same seed. The
order alternates between pairs (A B, B A, ...) so that a machine whose speed
drifts (other work on it) favours neither side. Each run's time is its
``metrics.json`` ``seconds`` (training loop plus the held-out evaluations; the
model load and imports are left out as the same in both).

Three figures are printed beside the goal of issue 24 (overhead <= 5%), each
the median over pairs:

- wall clock: (with - without) / without of the runs' ``seconds``. On a shared
  machine other work moves single runs by tens of percent, far more than the
  effect measured: read it over many pairs, or on an idle machine;
- CPU time: the same ratio of the train processes' user + system CPU seconds
  (``getrusage`` of the child; imports and model load included on both sides),
  much less sensitive to other work, blind to time spent waiting on fsync;
- inside checkpoints: the time the trainer itself spent saving checkpoints
  (``metrics.json`` ``checkpoint_seconds``, wall clock, fsync included) as a
  share of the run: the direct cost, which the other two can only bound.

The verdict (and the exit status) goes by the last two; the wall clock is
printed with its verdict but decides nothing. ``--control`` runs the same pairs
with checkpoints off on both sides (an A/A run): what it prints is the noise
floor of the two ratios on the machine at that time.

    python bench/checkpoint_bench.py [--records 1500] [--epochs 1] [--batch-size 8]
                                     [--block-size 128] [--pairs 2] [--workdir DIR]
                                     [--threads N] [--control]

The defaults are the demo's fine-tune (1500 records of about 850 characters, one
epoch of 8 x 128-token blocks). Text: Debian's fortunes when installed (as the demo image), else the
licence texts in /usr/share/common-licenses.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

GOAL = 0.05
FORTUNES = Path("/usr/share/games/fortunes")
LICENCES = Path("/usr/share/common-licenses")


def _cli() -> list[str]:
    found = shutil.which("substratus-ml")
    return [found] if found else [sys.executable, "-m", "substratus_ml.cli"]


def _paragraphs() -> list[str]:
    files = [p for p in sorted(FORTUNES.glob("*")) if p.is_file() and not p.suffix]
    files = files or [p for p in sorted(LICENCES.glob("*")) if p.is_file() and not p.is_symlink()]
    found: list[str] = []
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        found += [p.strip() for p in text.replace("\n%\n", "\n\n").split("\n\n") if len(p.strip()) > 40]
    if not found:
        found = [f"Sentence number {i} of a small synthetic corpus about cats and mats." for i in range(500)]
    return found


def prepare(work: Path, records: int) -> tuple[Path, Path]:
    """(base model dir, dataset file)."""
    paragraphs = _paragraphs()
    corpus = work / "corpus.txt"
    corpus.write_text("\n\n".join(paragraphs) + "\n")
    base = work / "saved"
    subprocess.run(_cli() + ["init-tiny", "--corpus", str(corpus), "--out", str(base), "--steps", "0"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = work / "data.jsonl"
    with data.open("w") as handle:
        index = 0
        for _ in range(records):  # about 850 characters a record, as the demo's Shakespeare
            text = ""
            while len(text) < 850:
                text, index = text + paragraphs[index % len(paragraphs)] + "\n", index + 1
            handle.write(json.dumps({"text": text}) + "\n")
    return base, data


@dataclass(frozen=True)
class Run:
    checkpoints: bool
    seconds: float
    cpu_seconds: float
    steps: int
    checkpoint_seconds: float
    saved: int


def train_once(work: Path, name: str, base: Path, data: Path, args: argparse.Namespace,
               checkpoints: bool) -> Run:
    root = work / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "checkpoints").mkdir(parents=True) if checkpoints else root.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARAM_")}
    if args.threads:
        env["SUBSTRATUS_THREADS"] = str(args.threads)
    if args.control:  # the directory exists, but nothing is written: the A side twice
        env.update(PARAM_CHECKPOINT_STEPS="0", PARAM_CHECKPOINT_SECONDS="0")
    env.update(TRAIN_DATA_PATH=str(data), TRAIN_EPOCHS=str(args.epochs), TRAIN_BATCH_SIZE=str(args.batch_size),
               OMP_WAIT_POLICY=env.get("OMP_WAIT_POLICY", "PASSIVE"))
    argv = _cli() + ["train", "--model-dir", str(base), "--out", str(root / "trained"),
                     "--logs-dir", str(root / "logs"), "--params-file", str(root / "params.json"),
                     "--checkpoint-dir", str(root / "checkpoints"), "--block-size", str(args.block_size)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"train failed ({done.returncode}): {done.stderr[-2000:]}")
    metrics = json.loads((root / "logs" / "metrics.json").read_text())
    saved = sum(1 for line in (root / "logs" / "train.log").read_text().splitlines()
                if line.startswith("checkpoint: step"))
    return Run(checkpoints, float(metrics["seconds"]), cpu, int(metrics["steps"]),
               float(metrics.get("checkpoint_seconds") or 0.0), saved)


def verdict(value: float) -> str:
    return "met" if value <= GOAL else "NOT met"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given (default: a temp dir)")
    parser.add_argument("--threads", type=int, default=None,
                        help="SUBSTRATUS_THREADS for both sides (default: as train.sh, all CPUs); "
                        "1 steadies the CPU-time ratio on a shared machine")
    parser.add_argument("--control", action="store_true",
                        help="A/A: no checkpoints on either side (the noise floor)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="checkpoint-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    base, data = prepare(work, args.records)
    what = "CONTROL (A/A): checkpoints off on both sides" if args.control else \
        "checkpoints at the default interval"
    print(f"demo-shaped model, {args.records} records, {args.epochs} epoch(s) of batch {args.batch_size} x "
          f"{args.block_size} tokens; {what}", flush=True)
    print(f"{'pair':>4} {'without s':>10} {'with s':>8} {'wall':>7} {'CPU without':>12} {'CPU with':>9} "
          f"{'CPU':>7} {'saved':>6} {'in ckpt s':>10}", flush=True)
    walls, cpus, shares = [], [], []
    for pair in range(1, args.pairs + 1):
        order = (False, True) if pair % 2 else (True, False)
        runs = {flag: train_once(work, f"run-{pair}-{'with' if flag else 'without'}", base, data, args, flag)
                for flag in order}
        without, with_ = runs[False], runs[True]
        walls.append(with_.seconds / without.seconds - 1)
        cpus.append(with_.cpu_seconds / without.cpu_seconds - 1)
        shares.append(with_.checkpoint_seconds / with_.seconds)
        print(f"{pair:>4} {without.seconds:>10.1f} {with_.seconds:>8.1f} {walls[-1]:>+7.1%} "
              f"{without.cpu_seconds:>12.1f} {with_.cpu_seconds:>9.1f} {cpus[-1]:>+7.1%} {with_.saved:>6} "
              f"{with_.checkpoint_seconds:>10.2f}", flush=True)
    wall, cpu, share = (statistics.median(x) for x in (walls, cpus, shares))
    print(f"steps per run: {without.steps}; overhead, median of {len(walls)} pairs (goal <= {GOAL:.0%}):")
    print(f"  wall clock          {wall:+7.2%}  {verdict(wall)}  (noisy on a shared machine; decides nothing)")
    print(f"  CPU time            {cpu:+7.2%}  {verdict(cpu)}")
    print(f"  inside checkpoints  {share:7.2%}  {verdict(share)}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if cpu <= GOAL and share <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
