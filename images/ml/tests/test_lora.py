"""LoRA adapters in the engine: rows of different adapters and the base in one decode step,
each equal to the same adapter merged into the base offline by peft (merge_and_unload)."""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import ADAPTERS, LORA_PROMPT, LORA_TOKENS, Reference
from substratus_ml.adapter_errors import (AdapterIncompatible, AdapterPathNotFound, NotAPeftAdapter)
from substratus_ml.engine import BatchEngine, EngineConfig, SamplingParams
from substratus_ml.loading import LoadedModel
from substratus_ml.lora_bank import Adapter
from substratus_ml.peft_adapter import CONFIG_FILE, WEIGHTS_FILE, read_adapter
from test_engine import Collector


def install(engine: BatchEngine, loaded: LoadedModel, name: str, path: Path) -> Adapter:
    weights = read_adapter(name, path, loaded.model, max_rank=64)
    adapter = Adapter(name, str(path), weights.rank, len(weights.modules))
    engine.add_adapter(adapter, weights).result(timeout=30)
    return adapter


def submit(engine: BatchEngine, loaded: LoadedModel, adapter: Adapter | None,
           tokens: int = LORA_TOKENS, prompt: str = LORA_PROMPT, **params: bool) -> Collector:
    collector = Collector()
    engine.submit(list(loaded.tokenizer.encode(prompt)), SamplingParams(tokens, **params), collector,
                  adapter=adapter)
    return collector


def result(collector: Collector) -> Reference:
    assert collector.finished.wait(60), "generation did not finish"
    assert collector.done is not None and collector.done.error is None, collector.done
    return Reference(collector.text, collector.done.completion_tokens)


@pytest.fixture()
def engine(tiny_model: LoadedModel) -> Iterator[BatchEngine]:
    eng = BatchEngine(tiny_model, EngineConfig(max_batch=8))
    eng.start()
    yield eng
    eng.close()
    assert not eng.bank.targets, "the engine left hooks on the shared model"


def test_adapters_and_the_base_share_one_step_and_each_equals_its_peft_merge(
        tiny_model: LoadedModel, adapter_dirs: dict[str, Path],
        references: dict[str | None, Reference]) -> None:
    eng = BatchEngine(tiny_model, EngineConfig(max_batch=8))
    adapters: dict[str | None, Adapter | None] = {None: None}
    # Installed before the worker starts, run as its first commands: then every request
    # below is admitted in one prefill and decoded in the same steps.
    for name, path in adapter_dirs.items():
        weights = read_adapter(name, path, tiny_model.model, max_rank=64)
        adapter = adapters[name] = Adapter(name, str(path), weights.rank, len(weights.modules))
        eng.add_adapter(adapter, weights)
    order = [None, "alpha", "beta", None, "gamma", "alpha"]
    collectors = [submit(eng, tiny_model, adapters[name]) for name in order]
    eng.start()
    try:
        outputs = [result(c) for c in collectors]
    finally:
        eng.close()
    assert eng.stats.prefills == 1 and eng.stats.largest_batch == len(order)
    for name, output in zip(order, outputs):
        assert output == references[name], name
    distinct = {name: references[name].text for name in [None, *ADAPTERS]}
    for first, second in itertools.combinations(distinct, 2):
        assert distinct[first] != distinct[second], (first, second)


def test_rows_join_and_leave_a_running_mixed_batch(engine: BatchEngine, tiny_model: LoadedModel,
                                                   adapter_dirs: dict[str, Path],
                                                   references: dict[str | None, Reference]) -> None:
    alpha = install(engine, tiny_model, "alpha", adapter_dirs["alpha"])
    beta = install(engine, tiny_model, "beta", adapter_dirs["beta"])
    long_base = submit(engine, tiny_model, None, tokens=60, ignore_eos=True)
    long_alpha = submit(engine, tiny_model, alpha, tokens=60, ignore_eos=True)
    assert long_base.started.wait(30) and long_alpha.started.wait(30)
    # Joined mid-way, in the steps of the long rows; the short ones leave first, moving slots.
    joined = {name: submit(engine, tiny_model, adapter)
              for name, adapter in [("beta", beta), (None, None), ("alpha", alpha)]}
    for name, collector in joined.items():
        assert result(collector) == references[name], name
    assert result(long_base).tokens == 60 and result(long_alpha).tokens == 60
    assert result(long_alpha).text.startswith(references["alpha"].text)
    assert result(long_base).text.startswith(references[None].text)


def test_a_larger_adapter_relays_out_the_stacks_and_the_first_still_answers(
        engine: BatchEngine, tiny_model: LoadedModel, adapter_dirs: dict[str, Path],
        references: dict[str | None, Reference]) -> None:
    alpha = install(engine, tiny_model, "alpha", adapter_dirs["alpha"])
    layout, rank = engine.bank.layout, engine.bank.rank
    assert result(submit(engine, tiny_model, alpha)) == references["alpha"]
    beta = install(engine, tiny_model, "beta", adapter_dirs["beta"])  # rank 8, more modules
    assert engine.bank.layout > layout and engine.bank.rank > rank == 4
    assert result(submit(engine, tiny_model, alpha)) == references["alpha"]
    assert result(submit(engine, tiny_model, beta)) == references["beta"]


def test_an_unloaded_adapter_finishes_its_admitted_requests_then_frees_its_slot(
        tiny_model: LoadedModel, adapter_dirs: dict[str, Path],
        references: dict[str | None, Reference]) -> None:
    eng = BatchEngine(tiny_model, EngineConfig(max_batch=8))
    weights = read_adapter("gamma", adapter_dirs["gamma"], tiny_model.model, max_rank=64)
    gamma = Adapter("gamma", str(adapter_dirs["gamma"]), weights.rank, len(weights.modules))
    eng.add_adapter(gamma, weights)
    admitted = [submit(eng, tiny_model, gamma), submit(eng, tiny_model, gamma, tokens=40)]
    gamma.unloaded = True
    retired = eng.remove_adapter(gamma)  # the worker runs it before it admits the two requests
    eng.start()
    try:
        retired.result(timeout=30)
        assert result(admitted[0]) == references["gamma"]
        assert result(admitted[1]).text.startswith(references["gamma"].text)
        eng.call(lambda: None).result(timeout=30)  # one more pass of the worker loop
        assert gamma.slot == 0 and eng.bank.loaded == 0
        # Its slot is reused, zeroed first: the next adapter answers as itself.
        alpha = install(eng, tiny_model, "alpha", adapter_dirs["alpha"])
        assert alpha.slot == 1
        assert result(submit(eng, tiny_model, alpha)) == references["alpha"]
        assert result(submit(eng, tiny_model, None)) == references[None]
    finally:
        eng.close()


# -- the PEFT reader's refusals ----------------------------------------------------------------

def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _edit_config(path: Path, **changes: object) -> None:
    config = json.loads((path / CONFIG_FILE).read_text())
    config.update(changes)
    (path / CONFIG_FILE).write_text(json.dumps(config))


def test_the_reader_names_what_is_wrong(tiny_model: LoadedModel, adapter_dirs: dict[str, Path],
                                        tmp_path: Path) -> None:
    model = tiny_model.model
    with pytest.raises(AdapterPathNotFound, match="does not exist"):
        read_adapter("x", tmp_path / "absent", model, 64)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotAPeftAdapter, match=f"no {CONFIG_FILE}"):
        read_adapter("x", tmp_path / "empty", model, 64)
    prompt = _copy(adapter_dirs["alpha"], tmp_path / "prompt")
    _edit_config(prompt, peft_type="PROMPT_TUNING")
    with pytest.raises(NotAPeftAdapter, match="only LORA"):
        read_adapter("x", prompt, model, 64)
    dora = _copy(adapter_dirs["alpha"], tmp_path / "dora")
    _edit_config(dora, use_dora=True)
    with pytest.raises(AdapterIncompatible, match="DoRA"):
        read_adapter("x", dora, model, 64)
    with pytest.raises(AdapterIncompatible, match="rank 8; this server accepts at most 4"):
        read_adapter("x", adapter_dirs["beta"], model, 4)


def test_modules_the_base_lacks_and_wrong_shapes_are_refused(tiny_model: LoadedModel,
                                                             adapter_dirs: dict[str, Path],
                                                             tmp_path: Path) -> None:
    alien = _copy(adapter_dirs["alpha"], tmp_path / "alien")
    weights = load_file(str(alien / WEIGHTS_FILE))
    save_file({k.replace(".h.1.", ".h.7."): v for k, v in weights.items()}, str(alien / WEIGHTS_FILE))
    with pytest.raises(AdapterIncompatible, match=r"does not have, e\.g\. transformer\.h\.7\.attn\.c_attn"):
        read_adapter("x", alien, tiny_model.model, 64)
    wide = _copy(adapter_dirs["alpha"], tmp_path / "wide")
    save_file({k: torch.zeros(v.shape[0], v.shape[1] * 2) if "lora_A" in k else v
               for k, v in weights.items()}, str(wide / WEIGHTS_FILE))
    with pytest.raises(AdapterIncompatible, match="maps 64 -> 96 features, the base model's layer 32 -> 96"):
        read_adapter("x", wide, tiny_model.model, 64)
