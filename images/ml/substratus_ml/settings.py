"""Server settings, read once at the entry point (flags > environment > defaults).

Every bound a request can hit is here, with the environment variable that sets it:

| Variable | Default | Bounds |
| --- | --- | --- |
| ``SUBSTRATUS_MAX_BATCH`` | 16 | requests decoded together (cache slots) |
| ``SUBSTRATUS_MAX_NEW_TOKENS`` | 512 | ``max_new_tokens`` / ``max_tokens`` of one request |
| ``SUBSTRATUS_MAX_MODEL_LEN`` | min(context, 2048) | prompt + completion tokens per request |
| ``SUBSTRATUS_MAX_PROMPT_TOKENS`` | max model len - 1 | prompt tokens (400 beyond) |
| ``SUBSTRATUS_MAX_BODY_BYTES`` | 1048576 | request body (413 beyond) |
| ``SUBSTRATUS_MAX_QUEUE`` | 256 | requests waiting for a slot (429 beyond) |
| ``SUBSTRATUS_REQUEST_TIMEOUT`` | 600 | seconds from arrival to last token (504 after) |
| ``SUBSTRATUS_SERVER_TOKEN`` | unset | bearer token every non-open path requires |
| ``SUBSTRATUS_CUDA_GRAPHS`` | 1 | 0 turns CUDA-graph decode steps off |
| ``SUBSTRATUS_ADAPTERS_DIR`` | /model/adapters | LoRA adapters loaded at start-up, one per sub-directory |
| ``SUBSTRATUS_MAX_ADAPTERS`` | 32 | LoRA adapters loaded at once (409 beyond) |
| ``SUBSTRATUS_MAX_LORA_RANK`` | 64 | rank of one adapter (400 beyond) |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MIN_TOKEN_LENGTH = 16


class SettingsError(ValueError):
    """An environment variable or flag has an unusable value; the message names it."""


def _int_env(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: must be a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r}: must be >= {minimum}")
    return value


def _token(env: Mapping[str, str]) -> str | None:
    if "SUBSTRATUS_SERVER_TOKEN" not in env:
        return None
    token = env["SUBSTRATUS_SERVER_TOKEN"].strip()
    if len(token) < MIN_TOKEN_LENGTH:
        # Set but empty or short: refuse rather than serve with weak or no protection.
        raise SettingsError(f"SUBSTRATUS_SERVER_TOKEN is set but has {len(token)} characters; "
                            f"use at least {MIN_TOKEN_LENGTH} (e.g. `openssl rand -hex 24`) "
                            "or unset it to serve without a token")
    return token


@dataclass(frozen=True)
class ServeSettings:
    model_dir: Path = Path("/model/saved")
    model_name: str = "substratus-model"
    max_batch: int = 16
    max_new_tokens: int = 512
    max_model_len: int | None = None  # None: min(the model's context, 2048)
    max_prompt_tokens: int | None = None  # None: max_model_len - 1
    max_body_bytes: int = 1 << 20
    max_queue: int = 256
    request_timeout_s: float = 600.0
    token: str | None = field(default=None, repr=False)
    cuda_graphs: bool = True
    adapters_dir: Path = Path("/model/adapters")
    max_adapters: int = 32
    max_lora_rank: int = 64

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, model_dir: Path | None = None,
                 model_name: str | None = None, max_batch: int | None = None,
                 max_new_tokens: int | None = None, adapters_dir: Path | None = None) -> "ServeSettings":
        directory = model_dir or Path(env.get("SUBSTRATUS_MODEL_DIR") or cls.model_dir)
        name = model_name or env.get("SUBSTRATUS_MODEL_NAME") or cls.model_name
        batch = max_batch if max_batch is not None else _int_env(
            env, "SUBSTRATUS_MAX_BATCH", cls.max_batch)
        bound = max_new_tokens if max_new_tokens is not None else _int_env(
            env, "SUBSTRATUS_MAX_NEW_TOKENS", cls.max_new_tokens)
        if batch < 1 or bound < 1:
            raise SettingsError("--max-batch and --max-new-tokens must be >= 1")
        model_len = _int_env(env, "SUBSTRATUS_MAX_MODEL_LEN", 0, minimum=0) or None
        if model_len is not None and model_len < 2:
            raise SettingsError(f"SUBSTRATUS_MAX_MODEL_LEN={model_len}: must be >= 2")
        return cls(directory, name, batch, bound, model_len,
                   _int_env(env, "SUBSTRATUS_MAX_PROMPT_TOKENS", 0, minimum=0) or None,
                   _int_env(env, "SUBSTRATUS_MAX_BODY_BYTES", cls.max_body_bytes),
                   _int_env(env, "SUBSTRATUS_MAX_QUEUE", cls.max_queue),
                   float(_int_env(env, "SUBSTRATUS_REQUEST_TIMEOUT", int(cls.request_timeout_s))),
                   _token(env),
                   env.get("SUBSTRATUS_CUDA_GRAPHS", "1").strip() not in ("0", "false", "no"),
                   adapters_dir or Path(env.get("SUBSTRATUS_ADAPTERS_DIR") or cls.adapters_dir),
                   _int_env(env, "SUBSTRATUS_MAX_ADAPTERS", cls.max_adapters),
                   _int_env(env, "SUBSTRATUS_MAX_LORA_RANK", cls.max_lora_rank))
