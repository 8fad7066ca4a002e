"""Build a tiny GPT-2-shaped model from scratch: the base model of the reference images.

No pretrained weights can be downloaded where Substratus is built and tested,
so ``substratus-ml init-tiny`` makes one: it trains a byte-level BPE tokenizer
on local text, builds a few-million-parameter GPT-2 from a config, pre-trains
it briefly on the same text and saves both with ``save_pretrained``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from substratus_ml import corpus
from substratus_ml.loading import make_readable
from substratus_ml.training import FitConfig, RunLog, cpu_threads, evaluate, fit

EOS = "<|endoftext|>"


@dataclass(frozen=True)
class TinySpec:
    vocab_size: int = 4096
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 256


def train_tokenizer(files: Sequence[Path], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``files``, wrapped for ``transformers``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(f) for f in files], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS, unk_token=EOS,
        model_max_length=TinySpec.n_positions,
    )


def build_model(spec: TinySpec, tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 sized by ``spec`` for ``tokenizer``'s vocabulary."""
    eos_id = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=spec.n_positions, n_embd=spec.n_embd,
        n_layer=spec.n_layer, n_head=spec.n_head, bos_token_id=eos_id, eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    torch.manual_seed(0)
    return GPT2LMHeadModel(config)


@dataclass(frozen=True)
class InitTinyArgs:
    corpus_files: Sequence[Path]
    out: Path
    steps: int = 300
    spec: TinySpec = TinySpec()
    batch_size: int = 8
    block_size: int = 64
    lr: float = 3e-3


def init_tiny(args: InitTinyArgs, log: RunLog) -> dict[str, float]:
    """Tokenizer + model + pre-training + save; returns the measured losses."""
    torch.set_num_threads(cpu_threads())
    started = time.perf_counter()
    files = [f for path in args.corpus_files for f in corpus.data_files(path)]
    tokenizer = train_tokenizer(files, args.spec.vocab_size)
    records: list[str] = []
    for path in args.corpus_files:
        records.extend(corpus.read_records(path))
    ids = corpus.token_stream(records, tokenizer.encode, tokenizer.eos_token_id)
    data = corpus.blocks(ids, min(args.block_size, args.spec.n_positions))
    model = build_model(args.spec, tokenizer)
    params = sum(p.numel() for p in model.parameters())
    log(f"init-tiny: {len(records)} records, {len(ids)} tokens, {params / 1e6:.2f}M params, "
        f"{args.steps} steps")
    sample = data[: min(len(data), 32)]
    loss_before = evaluate(model, sample)
    if args.steps > 0:
        fit(model, data, FitConfig(batch_size=args.batch_size, steps=args.steps, lr=args.lr), log)
    loss_after = evaluate(model, sample)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    make_readable(args.out)
    log(f"init-tiny: loss {loss_before:.3f} -> {loss_after:.3f}, saved to {args.out} "
        f"in {time.perf_counter() - started:.1f}s")
    return {"loss_before": loss_before, "loss_after": loss_after}
