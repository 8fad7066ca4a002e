"""``substratus-ml init-tiny`` builds a model that transformers can load and run."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import write_corpus
from substratus_ml.cli import main


def test_init_tiny_saves_a_loadable_model_and_tokenizer(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "saved"
    code = main(["init-tiny", "--corpus", str(corpus), "--out", str(out), "--steps", "4",
                 "--vocab-size", "300", "--n-layer", "1", "--n-embd", "32", "--n-head", "2",
                 "--n-positions", "64", "--batch-size", "2", "--block-size", "16"])
    assert code == 0
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    assert 256 < len(tokenizer) <= 300  # byte alphabet + merges + <|endoftext|>
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.pad_token is not None
    ids = tokenizer.encode("The quick brown fox")
    assert tokenizer.decode(ids) == "The quick brown fox"
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tokenizer))


def test_tokenizer_round_trips_text(tiny_dir: Path) -> None:
    # The session fixture ran init_tiny with 15 steps; its tokenizer must round-trip.
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir, local_files_only=True)
    text = "All that glitters is not gold."
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_missing_corpus_exits_1(tmp_path: Path, capsys: object) -> None:
    code = main(["init-tiny", "--corpus", str(tmp_path / "nope.txt"), "--out", str(tmp_path)])
    assert code == 1
