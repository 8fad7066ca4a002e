"""Request and response bodies of the model server (contract + OpenAI-compatible).

The upper bound on new tokens is configuration (``SUBSTRATUS_MAX_NEW_TOKENS``),
yet it must appear in the OpenAPI schema, so the request models are built by
:func:`make_schemas` once the server's settings are known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class GenerateResponse(BaseModel):
    generation: str = Field(description="The prompt followed by the generated text.")


class CompletionChoice(BaseModel):
    text: str
    index: int = 0
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "substratus"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: str
    detail: str | None = None


class Info(BaseModel):
    model: str
    kind: str | None = Field(None, description="transformers or gguf; null until loaded")
    source: str
    context_length: int | None = None
    max_new_tokens: int
    max_batch: int
    training_params: dict[str, Any] | None = Field(
        None, description="training_params.json of the served model, when it was fine-tuned")


@dataclass(frozen=True)
class Schemas:
    generate: type[BaseModel]
    completion: type[BaseModel]


def make_schemas(bound: int) -> Schemas:
    """Request models whose token fields are bounded by ``bound`` (inclusive)."""
    # (Named "bound": class bodies cannot see an enclosing name they also assign.)
    default = min(100, bound)

    class GenerateRequest(BaseModel):
        model_config = ConfigDict(extra="ignore")
        prompt: str = Field(description="Text to continue; the generation starts with it.")
        max_new_tokens: int = Field(default, ge=1, le=bound,
                                    description=f"Tokens to generate, 1..{bound}.")
        temperature: float = Field(0.0, ge=0.0, le=2.0,
                                   description="0 (default) decodes greedily.")
        top_p: float = Field(1.0, gt=0.0, le=1.0)

    class CompletionRequest(BaseModel):
        model_config = ConfigDict(extra="ignore")
        model: str | None = None
        prompt: str | list[str] = Field(description="A string, or a list holding one string.")
        max_tokens: int = Field(16, ge=1, le=bound,
                                description=f"Tokens to generate, 1..{bound}.")
        temperature: float = Field(1.0, ge=0.0, le=2.0)
        top_p: float = Field(1.0, gt=0.0, le=1.0)
        stream: bool = False
        stop: str | list[str] | None = Field(None, description="Up to 4 stop strings.")
        n: int = Field(1, ge=1, le=1, description="Only 1 is supported.")
        ignore_eos: bool = Field(False, description="Extension (as in vLLM): keep generating "
                                 "past end-of-sequence, up to max_tokens.")

        @field_validator("prompt")
        @classmethod
        def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
            if isinstance(value, list) and len(value) != 1:
                raise ValueError("only one prompt per request is supported")
            return value

        @field_validator("stop")
        @classmethod
        def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
            if isinstance(value, list) and (len(value) > 4 or any(not s for s in value)):
                raise ValueError("stop must hold 1 to 4 non-empty strings")
            if value == "":
                raise ValueError("stop must not be empty")
            return value

        def prompt_text(self) -> str:
            return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

        def stops(self) -> list[str]:
            if self.stop is None:
                return []
            return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    return Schemas(GenerateRequest, CompletionRequest)
