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


class ChatMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatMessage
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


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
    max_model_len: int | None = Field(None, description="prompt + completion tokens per request")
    max_prompt_tokens: int | None = None
    chat_template: bool | None = Field(None, description="whether the model has its own chat "
                                       "template (otherwise a plain transcript is used)")
    training_params: dict[str, Any] | None = Field(
        None, description="training_params.json of the served model, when it was fine-tuned")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] = Field(description="Text, or a list of text parts.")

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


def _check_stops(value: str | list[str] | None) -> str | list[str] | None:
    if isinstance(value, list) and (len(value) > 4 or any(not s for s in value)):
        raise ValueError("stop must hold 1 to 4 non-empty strings")
    if value == "":
        raise ValueError("stop must not be empty")
    return value


def _stop_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


REPETITION = ("Extension (as in vLLM and transformers): > 1 discourages tokens already in the "
              "prompt or the output.")


@dataclass(frozen=True)
class Schemas:
    generate: type[BaseModel]
    completion: type[BaseModel]
    chat: type[BaseModel]


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
        repetition_penalty: float = Field(1.0, ge=0.01, le=10.0, description=REPETITION)

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
        frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
        presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
        repetition_penalty: float = Field(1.0, ge=0.01, le=10.0, description=REPETITION)

        @field_validator("prompt")
        @classmethod
        def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
            if isinstance(value, list) and len(value) != 1:
                raise ValueError("only one prompt per request is supported")
            return value

        @field_validator("stop")
        @classmethod
        def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
            return _check_stops(value)

        def prompt_text(self) -> str:
            return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

        def stops(self) -> list[str]:
            return _stop_list(self.stop)

    class ChatCompletionRequest(BaseModel):
        model_config = ConfigDict(extra="ignore")
        model: str | None = None
        messages: list[InputMessage] = Field(min_length=1, description="The conversation so far.")
        max_tokens: int | None = Field(None, ge=1, le=bound,
                                       description=f"Tokens to generate, 1..{bound} (default {bound}).")
        max_completion_tokens: int | None = Field(None, ge=1, le=bound,
                                                  description="Newer name of max_tokens.")
        temperature: float = Field(1.0, ge=0.0, le=2.0)
        top_p: float = Field(1.0, gt=0.0, le=1.0)
        stream: bool = False
        stream_options: StreamOptions | None = None
        stop: str | list[str] | None = Field(None, description="Up to 4 stop strings.")
        n: int = Field(1, ge=1, le=1, description="Only 1 is supported.")
        ignore_eos: bool = Field(False, description="Extension (as in vLLM).")
        frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
        presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
        repetition_penalty: float = Field(1.0, ge=0.01, le=10.0, description=REPETITION)

        @field_validator("stop")
        @classmethod
        def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
            return _check_stops(value)

        def stops(self) -> list[str]:
            return _stop_list(self.stop)

        def token_limit(self) -> int:
            return self.max_completion_tokens or self.max_tokens or bound

    return Schemas(GenerateRequest, CompletionRequest, ChatCompletionRequest)
