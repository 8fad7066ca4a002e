"""Free-form training parameters: ``spec.training.params`` as the trainer reads them.

This project extends the container contract (issue 20): besides the contract's
``TRAIN_EPOCHS``, ``TRAIN_BATCH_SIZE`` and ``TRAIN_DATA_LIMIT``, the control
plane hands *every* entry of ``spec.training.params`` (camelCase keys, scalar
values) to ``train.sh`` twice:

- as a JSON object in ``/model/params.json`` (read-only; values keep their JSON types);
- as environment variables ``PARAM_<UPPER_SNAKE_CASE>`` (``learningRate`` ->
  ``PARAM_LEARNING_RATE``), strings.

:func:`read_raw` takes the file when it exists, else the variables; unknown
names are returned separately, for one log line (params are free-form: other
images have other parameters). :func:`resolve` validates each known parameter
against :data:`SPECS` and settles precedence: an explicit param beats the
image's ``train.sh`` flag (the image's default), which beats the built-in
default. That is the reverse of the usual "flags win", on purpose: the flags
are written once into an image, the params per Model.

``cli`` calls both once at start-up and hands :class:`HyperParams` down.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PARAMS_FILE = Path("/model/params.json")
ENV_PREFIX = "PARAM_"

Scalar = str | int | float | bool | None


class ParamError(ValueError):
    """A training parameter is missing or invalid; the message names it and the accepted range."""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter this trainer understands: its type, its range and what it does."""

    name: str  # camelCase, as in spec.training.params
    kind: type  # int, float or str
    default: Scalar
    meaning: str
    minimum: float | None = None
    maximum: float | None = None
    flag: str = ""  # the train.sh flag that sets the image's default

    @property
    def env(self) -> str:
        return env_name(self.name)

    def range_text(self) -> str:
        noun = {int: "a whole number", float: "a number", str: "a string"}[self.kind]
        if self.minimum is not None and self.maximum is not None:
            return f"{noun} from {_fmt(self.minimum)} to {_fmt(self.maximum)}"
        if self.minimum is not None:
            return f"{noun} >= {_fmt(self.minimum)}"
        return noun


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


# The contract's three arrive as TRAIN_*; they are named here so that they are not "unknown".
CONTRACT_PARAMS = {"epochs": "TRAIN_EPOCHS", "batchSize": "TRAIN_BATCH_SIZE", "dataLimit": "TRAIN_DATA_LIMIT"}

SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("learningRate", float, 5e-4, "peak learning rate of AdamW (weight decay 0.01); "
              "linear warm-up, then cosine decay to a tenth", 1e-12, 1.0, "--lr"),
    ParamSpec("warmupSteps", int, None, "steps of linear learning-rate warm-up "
              "(default: 10% of the steps, at least 1)", 0, 10_000_000, "--warmup-steps"),
    ParamSpec("maxSeqLength", int, 128, "tokens per training block (examples are packed into "
              "blocks); at most the model's context length", 2, 1_048_576, "--block-size"),
    ParamSpec("seed", int, 42, "seeds the shuffle, dropout and the LoRA initialisation: the same "
              "seed, data and parameters give the same model on a CPU", 0, 2**32 - 1, "--seed"),
    ParamSpec("loraRank", int, 8, "rank r of the LoRA adapter (LoRA training only)", 1, 1024, "--lora-r"),
    ParamSpec("loraAlpha", int, 16, "LoRA scaling alpha (the update is scaled by alpha / r)",
              1, 65536, "--lora-alpha"),
    ParamSpec("loraTargets", str, None, "comma-separated module names that get an adapter "
              "(default: per architecture, e.g. c_attn for GPT-2, q_proj,v_proj for Llama and Gemma)",
              None, None, "--lora-targets"),
    ParamSpec("checkpointSteps", int, 200, "write a checkpoint every this many steps (0: never by "
              "steps); only when the checkpoint directory exists", 0, 10_000_000, "--checkpoint-steps"),
    ParamSpec("checkpointSeconds", float, 60.0, "write a checkpoint when this many seconds passed "
              "since the last one (0: never by time); whichever of the two comes first",
              0, 1e9, "--checkpoint-seconds"),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}

_TARGET = re.compile(r"^[A-Za-z0-9_.\-]+$")


def env_name(name: str) -> str:
    """``learningRate`` -> ``PARAM_LEARNING_RATE`` (the control plane's rule)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return ENV_PREFIX + snake.upper()


@dataclass(frozen=True)
class RawParams:
    """Parameters as found, before validation: ``values`` by camelCase name."""

    values: Mapping[str, Scalar]
    source: str  # "/model/params.json" or "PARAM_* variables"
    ignored: tuple[str, ...] = ()  # names this trainer does not know


def read_raw(env: Mapping[str, str], params_file: Path = PARAMS_FILE) -> RawParams:
    """The params file when it exists (typed JSON), else the ``PARAM_*`` variables."""
    if params_file.exists():
        return _from_file(params_file)
    by_env = {spec.env: spec.name for spec in SPECS}
    by_env.update({env_name(name): name for name in CONTRACT_PARAMS})
    values: dict[str, Scalar] = {}
    ignored: list[str] = []
    for key in sorted(env):
        if not key.startswith(ENV_PREFIX):
            continue
        if key in by_env:
            values[by_env[key]] = env[key]
        else:
            ignored.append(key)
    return RawParams(values, "PARAM_* variables", tuple(ignored))


def _from_file(path: Path) -> RawParams:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParamError(f"{path}: not a readable JSON file ({exc}); it should hold "
                         "spec.training.params as one JSON object") from exc
    if not isinstance(data, dict):
        raise ParamError(f"{path}: must hold a JSON object (spec.training.params), "
                         f"not {type(data).__name__}")
    known = set(SPEC_BY_NAME) | set(CONTRACT_PARAMS)
    values = {k: v for k, v in data.items() if k in known}
    ignored = tuple(sorted(k for k in data if k not in known))
    return RawParams(values, str(path), ignored)


@dataclass(frozen=True)
class HyperParams:
    """The effective values of :data:`SPECS`, after precedence and validation."""

    learning_rate: float = 5e-4
    warmup_steps: int | None = None
    max_seq_length: int = 128
    seed: int = 42
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] | None = None
    checkpoint_steps: int = 200
    checkpoint_seconds: float = 60.0
    sources: Mapping[str, str] = field(default_factory=dict)  # camelCase name -> where it came from

    def explicit(self, name: str) -> bool:
        """Whether ``name`` was set by a param or a flag rather than left at the default."""
        return self.sources.get(name, "default") != "default"

    def as_params(self) -> dict[str, Scalar]:
        """camelCase name -> value, as recorded in ``training_params.json``."""
        values = _values(self)
        return {spec.name: values[spec.name] for spec in SPECS}


def _values(hyper: HyperParams) -> dict[str, Scalar]:
    targets = ",".join(hyper.lora_targets) if hyper.lora_targets is not None else None
    return {"learningRate": hyper.learning_rate, "warmupSteps": hyper.warmup_steps,
            "maxSeqLength": hyper.max_seq_length, "seed": hyper.seed, "loraRank": hyper.lora_rank,
            "loraAlpha": hyper.lora_alpha, "loraTargets": targets,
            "checkpointSteps": hyper.checkpoint_steps, "checkpointSeconds": hyper.checkpoint_seconds}


def resolve(raw: RawParams, flags: Mapping[str, Scalar]) -> HyperParams:
    """Validate and merge: ``raw`` (params) > ``flags`` (train.sh, by camelCase name) > defaults.

    A flag left unset is ``None``. Raises :class:`ParamError` naming the
    parameter, where its value came from and the accepted range.
    """
    chosen: dict[str, Any] = {}  # checked: each value has its spec's kind
    sources: dict[str, str] = {}
    for spec in SPECS:
        value, source = spec.default, "default"
        if flags.get(spec.name) is not None:
            value, source = flags[spec.name], f"train.sh {spec.flag}"
        if raw.values.get(spec.name) is not None:
            origin = spec.env if raw.source.startswith(ENV_PREFIX) else raw.source
            value, source = raw.values[spec.name], origin
        chosen[spec.name] = value if source == "default" else check(spec, value, source)
        sources[spec.name] = source
    targets = chosen["loraTargets"]
    return HyperParams(
        learning_rate=float(chosen["learningRate"]),
        warmup_steps=None if chosen["warmupSteps"] is None else int(chosen["warmupSteps"]),
        max_seq_length=int(chosen["maxSeqLength"]),
        seed=int(chosen["seed"]),
        lora_rank=int(chosen["loraRank"]),
        lora_alpha=int(chosen["loraAlpha"]),
        lora_targets=None if targets is None else tuple(str(targets).split(",")),
        checkpoint_steps=int(chosen["checkpointSteps"]),
        checkpoint_seconds=float(chosen["checkpointSeconds"]),
        sources=sources,
    )


def check(spec: ParamSpec, value: Scalar, source: str) -> Scalar:
    """``value`` converted to ``spec.kind`` and range-checked, or :class:`ParamError`."""
    problem = f"{spec.name}={value!r} (from {source}): must be {spec.range_text()}"
    if spec.kind is str:
        return _targets(spec, value, problem)
    number = _number(value, spec.kind is int)
    if number is None:
        raise ParamError(problem)
    if (spec.minimum is not None and number < spec.minimum) or (
            spec.maximum is not None and number > spec.maximum):
        raise ParamError(problem)
    return number


def _number(value: Scalar, whole: bool) -> int | float | None:
    """JSON numbers, or strings holding one (YAML reads ``2e-4`` as a string); never booleans."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    number = float(value)
    if not math.isfinite(number):
        return None
    if whole:
        return int(number) if number.is_integer() else None
    return number


def _targets(spec: ParamSpec, value: Scalar, problem: str) -> str:
    if not isinstance(value, str):
        raise ParamError(problem)
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names or not all(_TARGET.match(name) for name in names):
        raise ParamError(f"{problem} (comma-separated module names such as q_proj,v_proj)")
    return ",".join(names)

