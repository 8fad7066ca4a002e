"""Request and response bodies of the model server (contract + OpenAI-compatible).

Every model here is a static class. The upper bound on new tokens is
configuration (``SUBSTRATUS_MAX_NEW_TOKENS``): the handlers check it (400 naming
the limit, as vLLM answers) and the app writes it into the OpenAPI document
as each token field's ``maximum`` (:data:`TOKEN_FIELDS`).
"""

from __future__ import annotations

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
    root: str | None = Field(default=None, description="The base model's directory; an adapter's own path "
                             "(as vLLM lists them).")
    parent: str | None = Field(default=None, description="An adapter's base model (its id); null for the base.")
    max_model_len: int | None = None


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
    adapters: list[str] = Field(default_factory=list, description="LoRA adapters loaded now")


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


GENERATE_DEFAULT = 100  # the contract's example
COMPLETION_DEFAULT = 16  # OpenAI's

REPETITION = ("Extension (as in vLLM and transformers): > 1 discourages tokens already in the "
              "prompt or the output.")


MODEL = ("The base model's name or a loaded LoRA adapter's (GET /v1/models); absent: the base. "
         "An unknown name is 404.")


def _max_tokens(description: str) -> Any:
    # The server's bound (SUBSTRATUS_MAX_NEW_TOKENS) is checked by the handler (400 naming it,
    # as vLLM does) and written into the OpenAPI document by the app: these classes are static.
    return Field(default=None, ge=1, description=description)


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    prompt: str = Field(description="Text to continue; the generation starts with it.")
    max_new_tokens: int | None = _max_tokens(
        f"Tokens to generate, 1..the server's limit (default {GENERATE_DEFAULT}, or the limit if lower).")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 (default) decodes greedily.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    repetition_penalty: float = Field(1.0, ge=0.01, le=10.0, description=REPETITION)
    model: str | None = Field(default=None, description="Extension: " + MODEL)


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(default=None, description=MODEL)
    prompt: str | list[str] = Field(description="A string, or a list holding one string.")
    max_tokens: int | None = _max_tokens(
        f"Tokens to generate, 1..the server's limit (default {COMPLETION_DEFAULT}).")
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
    model: str | None = Field(default=None, description=MODEL)
    messages: list[InputMessage] = Field(min_length=1, description="The conversation so far.")
    max_tokens: int | None = _max_tokens("Tokens to generate, 1..the server's limit (default: the limit).")
    max_completion_tokens: int | None = _max_tokens("Newer name of max_tokens; wins when both are given.")
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

    def requested_tokens(self) -> tuple[str, int | None]:
        """(field name, value) of the token limit the request gave, if any."""
        if self.max_completion_tokens is not None:
            return "max_completion_tokens", self.max_completion_tokens
        return "max_tokens", self.max_tokens


# Schema name -> its fields bounded by SUBSTRATUS_MAX_NEW_TOKENS.
TOKEN_FIELDS: dict[str, tuple[str, ...]] = {
    "GenerateRequest": ("max_new_tokens",), "CompletionRequest": ("max_tokens",),
    "ChatCompletionRequest": ("max_tokens", "max_completion_tokens")}


class LoadAdapterRequest(BaseModel):
    """vLLM's body for POST /v1/load_lora_adapter."""

    model_config = ConfigDict(extra="ignore")
    lora_name: str = Field(min_length=1, description="The name requests will use as `model`.")
    lora_path: str = Field(min_length=1, description="A PEFT adapter directory (adapter_config.json "
                           "and adapter_model.safetensors), on the server's filesystem; a relative "
                           "path is under SUBSTRATUS_ADAPTERS_DIR.")


class UnloadAdapterRequest(BaseModel):
    """vLLM's body for POST /v1/unload_lora_adapter."""

    model_config = ConfigDict(extra="ignore")
    lora_name: str = Field(min_length=1)


class AdapterAnswer(BaseModel):
    message: str = Field(description="vLLM's success text (vLLM answers it alone, as text/plain).")
    model: ModelCard
    rank: int
    modules: int = Field(description="Modules of the base model the adapter changes.")
    load_seconds: float | None = Field(default=None, description="Reading, checking and installing it.")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = Field(default=None, description="Stable name of the case, e.g. model_not_found, "
                             "adapter_already_loaded (see the README).")


class ErrorBody(BaseModel):
    """OpenAI's error shape, with the message also as `detail` (this server's older shape)."""

    error: ErrorDetail
    detail: str
