"""``substratus-ml train``: the body of the contract's ``train.sh``.

Substratus runs ``train.sh`` with ``TRAIN_DATA_PATH``, ``TRAIN_DATA_LIMIT``,
``TRAIN_BATCH_SIZE`` and ``TRAIN_EPOCHS`` set from the Model resource, and (this
project's extensions) the free-form ``spec.training.params`` in
``/model/params.json`` and ``PARAM_*`` (:mod:`substratus_ml.params`),
``TRAIN_OUTPUT`` (:mod:`substratus_ml.outputs`) and a checkpoint volume at
``/model/checkpoints`` (:mod:`substratus_ml.checkpoints`). ``cli`` reads all of
that once and calls :func:`run_train`, which fine-tunes the model found in
``/model/saved`` and writes the result to ``/model/trained`` together with
``training_params.json``, so the server that later loads it can show which
parameters produced it. Logs, ``metrics.json`` and ``progress.jsonl`` (the
contract's optional progress extension, :mod:`substratus_ml.progress`) go to
``/model/logs``. Either every weight is trained (the tiny model) or a LoRA
adapter (``--lora``, the Gemma example, or ``TRAIN_OUTPUT=adapter``): then the
base gets no gradient and no optimizer state, which is what makes a
270M-parameter model trainable on two CPU cores.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from substratus_ml import corpus, examples
from substratus_ml.checkpoints import CHECKPOINT_DIR, Checkpointing, CheckpointStore, Policy, TrainState, fingerprint
from substratus_ml.devices import pick_device
from substratus_ml.loading import load_pretrained
from substratus_ml.outputs import Output, save_model, write_records
from substratus_ml.params import SPEC_BY_NAME, HyperParams, ParamError, RawParams
from substratus_ml.progress import ProgressLog
from substratus_ml.training import FitConfig, RunLog, cpu_threads, evaluate, fit, trained_parameters

__all__ = ["ParamError", "TrainDirs", "TrainOptions", "TrainParams", "output_from_env", "params_from_env",
           "run_train"]


@dataclass(frozen=True)
class TrainParams:
    data_path: Path
    data_limit: int | None = None
    batch_size: int = 8
    epochs: int = 1


def _positive_int(env: Mapping[str, str], name: str, raw: RawParams | None, param: str) -> int | None:
    text = env.get(name, "").strip()
    if not text:
        value = raw.values.get(param) if raw is not None else None
        if raw is None or value is None:
            return None
        origin = f"PARAM_{name.removeprefix('TRAIN_')}" if raw.source.startswith("PARAM_") else raw.source
        return _whole(value, param, origin)
    try:
        value = int(text)
    except ValueError:
        raise ParamError(f"{name}={text!r}: must be a whole number >= 1") from None
    if value < 1:
        raise ParamError(f"{name}={text!r}: must be >= 1")
    return value


def _whole(value: object, param: str, origin: str) -> int:
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, (str, float)) and not isinstance(value, bool):
        try:
            as_float = float(value)
            number = int(as_float) if as_float.is_integer() else None
        except ValueError:
            number = None
    if number is None or number < 1:
        raise ParamError(f"{param}={value!r} (from {origin}): must be a whole number >= 1")
    return number


def params_from_env(env: Mapping[str, str], raw: RawParams | None = None) -> TrainParams:
    """The contract's parameters: ``TRAIN_*``, else ``epochs``/``batchSize``/``dataLimit`` of ``raw``."""
    path = env.get("TRAIN_DATA_PATH", "").strip() or env.get("DATASET_PATH", "").strip()
    if not path:
        raise ParamError("TRAIN_DATA_PATH is not set: point it at the dataset file "
                         "(JSONL with one {\"text\": ...}, {\"messages\": [...]} or "
                         "{\"prompt\": ..., \"completion\": ...} per line, or plain text)")
    batch_size = _positive_int(env, "TRAIN_BATCH_SIZE", raw, "batchSize")
    epochs = _positive_int(env, "TRAIN_EPOCHS", raw, "epochs")
    return TrainParams(
        data_path=Path(path),
        data_limit=_positive_int(env, "TRAIN_DATA_LIMIT", raw, "dataLimit"),
        batch_size=batch_size if batch_size is not None else TrainParams.batch_size,
        epochs=epochs if epochs is not None else TrainParams.epochs,
    )


def output_from_env(env: Mapping[str, str]) -> Output:
    text = env.get("TRAIN_OUTPUT", "").strip() or Output.MERGED.value
    try:
        return Output(text)
    except ValueError:
        raise ParamError(f"TRAIN_OUTPUT={text!r}: must be merged (a whole model, the default) "
                         "or adapter (a LoRA adapter only)") from None


@dataclass(frozen=True)
class TrainDirs:
    model_dir: Path = Path("/model/saved")
    out: Path = Path("/model/trained")
    logs_dir: Path = Path("/model/logs")
    checkpoints: Path = CHECKPOINT_DIR  # used only when it exists


@dataclass(frozen=True)
class TrainOptions:
    hyper: HyperParams = HyperParams()
    lora: bool = False  # train.sh --lora: a LoRA adapter, merged into the base when saved
    output: Output = Output.MERGED
    ignored_params: tuple[str, ...] = ()
    params_source: str = "defaults"

    @property
    def uses_lora(self) -> bool:
        return self.lora or self.output is Output.ADAPTER


@dataclass
class _Run:
    """What one run found and did, for the records."""

    examples: int = 0
    resumed_from: int | None = None
    fingerprint: str | None = None
    checkpoint: Checkpointing | None = None
    lora_targets: tuple[str, ...] | None = None


def run_train(params: TrainParams, dirs: TrainDirs, options: TrainOptions = TrainOptions()) -> dict[str, Any]:
    """Fine-tune (resuming from a checkpoint when one fits), save, and return the metrics."""
    torch.set_num_threads(cpu_threads())
    log = RunLog(dirs.logs_dir / "train.log")
    progress = ProgressLog(dirs.logs_dir / "progress.jsonl")
    try:
        return _train(params, dirs, options, log, progress)
    finally:
        progress.close()
        log.close()


def _train(params: TrainParams, dirs: TrainDirs, options: TrainOptions, log: RunLog,
           progress: ProgressLog) -> dict[str, Any]:
    hyper, run = options.hyper, _Run()
    _log_params(params, options, log)
    found = corpus.read_examples(params.data_path, params.data_limit)
    run.examples = len(found)
    started = time.perf_counter()
    model, tokenizer, _ = load_pretrained(dirs.model_dir, torch.float32, pick_device())
    log(f"train: {type(model).__name__} on {model.device}, loaded in {time.perf_counter() - started:.0f}s")
    torch.manual_seed(hyper.seed)  # before the adapter: its initialisation draws from it
    if options.uses_lora:
        model, run.lora_targets = _with_lora(model, hyper, log)
    block = _block_size(model, hyper, log)
    train, held = _blocks(tokenizer, found, block, log)
    steps = params.epochs * math.ceil(len(train) / params.batch_size)
    config = FitConfig(batch_size=params.batch_size, steps=steps, lr=hyper.learning_rate,
                       warmup_steps=hyper.warmup_steps, seed=hyper.seed)
    resume = _checkpointing(params, dirs, options, model, config, run, log)
    started = time.perf_counter()
    loss_before = resume.notes["loss_before"] if resume else evaluate(model, held)
    if run.checkpoint is not None:
        run.checkpoint.notes["loss_before"] = loss_before
    log(f"train: {len(train)} training blocks of {train.ids.shape[1]} tokens, {len(held)} held-out "
        f"blocks, {steps} steps, loss before {loss_before:.4f}")
    last = fit(model, train, config, log, progress, checkpoints=run.checkpoint, resume=resume)
    loss_after = evaluate(model, held)
    elapsed = time.perf_counter() - started
    metrics = _metrics(params, run, steps, elapsed, loss_before, loss_after)
    latest = {"checkpoint": run.checkpoint.latest_step} if run.checkpoint and run.checkpoint.latest_step is not None else {}
    progress.write(steps, steps, params.epochs, last, eval_loss_before=loss_before, eval_loss=loss_after, **latest)
    save_model(model, tokenizer, dirs.out, options.output, options.lora)
    write_records(dirs.out, dirs.logs_dir, _record(params, dirs, options, run, metrics), metrics)
    log(f"train: loss {loss_before:.4f} -> {loss_after:.4f}; saved to {dirs.out} ({options.output.value})")
    return metrics


def _log_params(params: TrainParams, options: TrainOptions, log: RunLog) -> None:
    hyper = options.hyper
    shown = ", ".join(f"{name}={value}" + ("" if hyper.sources.get(name, "default") == "default"
                                            else f" ({hyper.sources[name]})")
                      for name, value in hyper.as_params().items())
    log(f"train: epochs {params.epochs}, batch size {params.batch_size}, data limit {params.data_limit}, "
        f"output {options.output.value}, {'LoRA' if options.uses_lora else 'every weight'}; {shown}")
    if options.ignored_params:
        log(f"params: ignoring {', '.join(options.ignored_params)} from {options.params_source}: "
            "not parameters of this trainer (known: " + ", ".join(SPEC_BY_NAME) + ")")
    lora_only = [n for n in ("loraRank", "loraAlpha", "loraTargets") if hyper.explicit(n)
                 and not hyper.sources[n].startswith("train.sh")]
    if lora_only and not options.uses_lora:
        log(f"params: {', '.join(lora_only)} apply to LoRA training only; this run trains every "
            "weight (set TRAIN_OUTPUT=adapter for a LoRA adapter)")


def _with_lora(model: Any, hyper: HyperParams, log: RunLog) -> tuple[Any, tuple[str, ...]]:
    from peft import LoraConfig, get_peft_model

    from transformers.pytorch_utils import Conv1D

    targets = hyper.lora_targets or _default_targets(model)
    # GPT-2's projections are Conv1D (weights stored transposed); peft must be told.
    transposed = any(isinstance(module, Conv1D) and name.rsplit(".", 1)[-1] in targets
                     for name, module in model.named_modules())
    config = LoraConfig(r=hyper.lora_rank, lora_alpha=hyper.lora_alpha, target_modules=list(targets),
                        lora_dropout=0.0, bias="none", task_type="CAUSAL_LM", fan_in_fan_out=transposed)
    try:
        model = get_peft_model(model, config)
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        raise ParamError(f"loraTargets={','.join(targets)}: {exc}") from exc
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log(f"train: LoRA r={hyper.lora_rank} on {', '.join(targets)}: {trainable / 1e6:.2f}M of "
        f"{total / 1e6:.0f}M parameters trained")
    return model, tuple(targets)


def _default_targets(model: Any) -> tuple[str, ...]:
    """peft's per-architecture defaults (GPT-2: c_attn; Llama, Gemma, Mistral, Qwen: q_proj, v_proj)."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    kind = str(getattr(model.config, "model_type", ""))
    if kind not in DEFAULTS:
        raise ParamError(f"loraTargets: no default for the architecture {kind!r}; set loraTargets "
                         "(PARAM_LORA_TARGETS) to the module names to adapt, e.g. q_proj,v_proj")
    return tuple(DEFAULTS[kind])


def _block_size(model: Any, hyper: HyperParams, log: RunLog) -> int:
    """maxSeqLength, at most the model's context: an explicit param over it is an error,
    an image default over it is lowered (one image may hold several models)."""
    context = int(getattr(model.config, "max_position_embeddings", 0) or hyper.max_seq_length)
    if hyper.max_seq_length <= context:
        return hyper.max_seq_length
    source = hyper.sources.get("maxSeqLength", "default")
    if source == "default" or source.startswith("train.sh"):
        log(f"train: maxSeqLength {hyper.max_seq_length} lowered to the model's context of {context} tokens")
        return context
    raise ParamError(f"maxSeqLength={hyper.max_seq_length} (from {source}): must be from 2 to "
                     f"{context}, the model's context length")


def _blocks(tokenizer: Any, found: list[corpus.Sourced], block: int, log: RunLog
            ) -> tuple[corpus.TokenBlocks, corpus.TokenBlocks]:
    """Training and held-out blocks with labels (the last 10% of the examples are held out)."""
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    render = examples.template_renderer(tokenizer)
    encoded = []
    for item in found:
        try:
            encoded.append(examples.encode(item.example, tokenizer, render))
        except Exception as exc:  # jinja2 errors from a chat template, raise_exception() in it
            raise corpus.DataError(f"{item.where}: the chat template refused the conversation: {exc}") from exc
    _log_shapes(found, encoded, tokenizer, log)
    train_part, held_part = corpus.split_holdout(encoded)
    train = corpus.labelled_blocks(*corpus.encoded_stream(train_part, eos), block)
    held = corpus.labelled_blocks(*corpus.encoded_stream(held_part, eos), block)
    return train, held


def _log_shapes(found: list[corpus.Sourced], encoded: list[examples.Encoded], tokenizer: Any,
                log: RunLog) -> None:
    kinds = {"text": 0, "chat": 0, "prompt/completion": 0}
    for item in found:
        kinds["text" if isinstance(item.example, str) else
              "chat" if isinstance(item.example, examples.Chat) else "prompt/completion"] += 1
    log("train: examples " + ", ".join(f"{k} {v}" for k, v in kinds.items() if v))
    if kinds["chat"]:
        template = "its own" if getattr(tokenizer, "chat_template", None) else "the default transcript"
        log(f"train: chats rendered with {template} chat template; assistant turns learned")
    whole = sum(1 for e in encoded if not e.split)
    if whole:
        log(f"train: {whole} chats learned whole: the chat template does not render them turn by turn")


def _checkpointing(params: TrainParams, dirs: TrainDirs, options: TrainOptions, model: Any,
                   config: FitConfig, run: _Run, log: RunLog) -> TrainState | None:
    """Set up checkpoints when the directory exists; load the state to resume from, if any fits."""
    if not dirs.checkpoints.is_dir():
        return None
    hyper = options.hyper
    decisive = {**asdict(params), **hyper.as_params(), "method": "lora" if options.uses_lora else "full"}
    for name in ("checkpointSteps", "checkpointSeconds"):
        decisive.pop(name)
    run.fingerprint = fingerprint(decisive, params.data_path, dirs.model_dir)
    store = CheckpointStore(dirs.checkpoints, run.fingerprint, log)
    store.clean()
    explicit = hyper.explicit("checkpointSteps") or hyper.explicit("checkpointSeconds")
    policy = Policy(hyper.checkpoint_steps, hyper.checkpoint_seconds, None if explicit else 0.05)
    run.checkpoint = Checkpointing(store, policy, log)
    state = store.load()
    if state is None:
        log(f"checkpoint: none to resume in {dirs.checkpoints}; fingerprint {run.fingerprint}")
        return None
    trained = trained_parameters(model)
    if set(state.weights) != set(trained) or state.total_steps != config.steps or "loss_before" not in state.notes:
        log(f"checkpoint: step {state.step} in {dirs.checkpoints} does not fit this model; starting from step 0")
        return None
    with torch.no_grad():
        for name, parameter in trained.items():
            parameter.copy_(state.weights[name])
    run.resumed_from = state.step
    run.checkpoint.resumed(state.step)
    log(f"checkpoint: resuming from step {state.step} of {state.total_steps} (epoch {state.epoch:.2f}, "
        f"loss {state.loss:.4f}) in {dirs.checkpoints}")
    return state


def _metrics(params: TrainParams, run: _Run, steps: int, elapsed: float, loss_before: float,
             loss_after: float) -> dict[str, Any]:
    done = steps - (run.resumed_from or 0)
    metrics: dict[str, Any] = {
        "loss_before": loss_before, "loss_after": loss_after, "epochs": params.epochs,
        "batch_size": params.batch_size, "data_limit": params.data_limit, "records": run.examples,
        "steps": steps, "seconds": round(elapsed, 2), "steps_per_second": round(done / max(elapsed, 1e-9), 4),
        "resumed_from_step": run.resumed_from,
    }
    if run.checkpoint is not None:
        metrics["checkpoint_step"] = run.checkpoint.latest_step
        metrics["checkpoint_seconds"] = round(run.checkpoint.seconds_spent, 3)
    return metrics


def _record(params: TrainParams, dirs: TrainDirs, options: TrainOptions, run: _Run,
            metrics: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(params).items()}
    record.update(metrics)
    record.update({
        "base_model": str(dirs.model_dir), "method": "lora" if options.uses_lora else "full",
        "output": options.output.value, "params": options.hyper.as_params(),
        "param_sources": dict(options.hyper.sources), "ignored_params": list(options.ignored_params),
    })
    if run.lora_targets is not None:
        record["params"]["loraTargets"] = ",".join(run.lora_targets)
    if run.fingerprint is not None:
        record["fingerprint"] = run.fingerprint
    return record
