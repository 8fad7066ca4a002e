"""OpenAI-compatible ``/v1/completions``, ``/v1/chat/completions`` and ``/v1/models``.

Lets existing clients (the official ``openai`` SDK, LangChain, ...) talk to a
Substratus model server unchanged. Unlike ``/generate``, the returned text is
the completion alone, per OpenAI. Chat prompts use the model's chat template,
or a plain transcript for base models without one (:mod:`substratus_ml.chat`).
Streams are server-sent events ending with ``data: [DONE]``; an error after
the stream has begun (the request's deadline passed, the model failed) arrives
as a ``data: {"error": ...}`` event, as vLLM sends it.

``model`` picks the base model or a loaded LoRA adapter
(:mod:`substratus_ml.adapters`); an unknown name is 404 listing the known ones.
"""

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from substratus_ml.adapters import AdapterRegistry
from substratus_ml.chat import ChatFormat
from substratus_ml.disconnect import until_disconnected
from substratus_ml.engine import SamplingParams
from substratus_ml.generation import (DeadlineExceeded, FinishReason, GenerationError, Generator,
                                      Result, new_tokens)
from substratus_ml.lora_bank import Adapter
from substratus_ml.schemas import (COMPLETION_DEFAULT, ChatChoice, ChatChunkChoice, ChatCompletion,
                                   ChatCompletionChunk, ChatCompletionRequest, ChatDelta, ChatMessage,
                                   Completion, CompletionChoice, CompletionRequest, ErrorBody, ModelCard,
                                   ModelList, Usage)
from substratus_ml.settings import ServeSettings

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The prompt has more tokens than the server accepts, "
          "or max_tokens is over SUBSTRATUS_MAX_NEW_TOKENS."},
    404: {"model": ErrorBody, "description": "`model` names neither the base nor a loaded adapter; "
          "the message lists the names served."},
    429: {"model": ErrorBody, "description": "Too many requests are waiting; retry after "
          "`Retry-After` seconds."},
    503: {"model": ErrorBody, "description": "The model is not loaded yet."},
    504: {"model": ErrorBody, "description": "The request ran past SUBSTRATUS_REQUEST_TIMEOUT."}}


def _usage(result: Result) -> Usage:
    return Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                 total_tokens=result.prompt_tokens + result.completion_tokens)


def _event(body: BaseModel) -> str:
    return f"data: {body.model_dump_json(exclude_none=False)}\n\n"


def _error_event(exc: Exception) -> str:
    timeout = isinstance(exc, DeadlineExceeded)
    error = {"message": str(exc), "type": "timeout" if timeout else "server_error",
             "code": 504 if timeout else 500}
    return f"data: {json.dumps({'error': error})}\n\n"


async def _sse(events: AsyncIterator[str]) -> AsyncIterator[str]:
    """Wrap a chunk stream: errors become an error event, and the stream always ends with DONE."""
    try:
        async for chunk in events:
            yield chunk
    except (DeadlineExceeded, GenerationError) as exc:
        yield _error_event(exc)
    yield "data: [DONE]\n\n"


def _stream_response(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(_sse(events), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


async def _completion_chunks(pieces: AsyncIterator[str | Result], cid: str, created: int,
                             model: str, request: Request) -> AsyncIterator[str]:
    async for item in pieces:
        reason: FinishReason | None = None
        if isinstance(item, Result):
            request.state.tokens = item.completion_tokens
            text, reason = "", item.finish_reason
        else:
            text = item
        yield _event(Completion(id=cid, created=created, model=model, choices=[
            CompletionChoice(text=text, finish_reason=reason)]))


async def _chat_chunks(pieces: AsyncIterator[str | Result], cid: str, created: int, model: str,
                       usage: bool, request: Request) -> AsyncIterator[str]:
    def chunk(delta: ChatDelta, reason: FinishReason | None = None) -> str:
        return _event(ChatCompletionChunk(id=cid, created=created, model=model, choices=[
            ChatChunkChoice(delta=delta, finish_reason=reason)]))

    yield chunk(ChatDelta(role="assistant", content=""))
    async for item in pieces:
        if isinstance(item, str):
            yield chunk(ChatDelta(content=item))
            continue
        request.state.tokens = item.completion_tokens
        yield chunk(ChatDelta(), item.finish_reason)
        if usage:
            yield _event(ChatCompletionChunk(id=cid, created=created, model=model, choices=[],
                                             usage=_usage(item)))


def _penalties(body: CompletionRequest | ChatCompletionRequest) -> tuple[float, float, float]:
    """(repetition, frequency, presence): SamplingParams' fields after stop_token_ids."""
    return body.repetition_penalty, body.frequency_penalty, body.presence_penalty


async def _collect(pieces: AsyncIterator[str | Result]) -> Result:
    result = None
    async for item in pieces:
        if isinstance(item, Result):
            result = item
    assert result is not None  # stream_text always ends with a Result
    return result


class Serving(Protocol):
    """What the routes need from the app (its ``ModelSlot``)."""

    def require(self) -> Generator: ...

    def require_chat(self) -> tuple[Generator, ChatFormat]: ...

    def require_adapters(self) -> AdapterRegistry: ...

    def loaded_adapters(self) -> list[Adapter]: ...  # none while the model loads

    def base_facts(self) -> tuple[str | None, int | None]: ...  # (model directory, max model len)


def model_cards(serving: Serving, base_name: str, created: int) -> ModelList:
    """The base model first (clients that take the first entry get it), then each adapter."""
    root, max_len = serving.base_facts()
    cards = [ModelCard(id=base_name, created=created, root=root, max_model_len=max_len)]
    cards += [ModelCard(id=a.name, created=created, root=a.path, parent=base_name, max_model_len=max_len)
              for a in serving.loaded_adapters()]
    return ModelList(data=cards)


def add_openai_routes(app: FastAPI, serving: Serving, settings: ServeSettings) -> None:
    started = int(time.time())
    bound = settings.max_new_tokens
    stream_doc = {"content": {"text/event-stream": {}}, "description": "The answer, or SSE "
                  "chunks ending with `data: [DONE]` when stream is true."}

    @app.get("/v1/models", response_model=ModelList, tags=["openai"])
    def models() -> ModelList:
        """The base model and each loaded LoRA adapter (OpenAI list format; adapters name
        the base as `parent`, as vLLM lists them)."""
        return model_cards(serving, settings.model_name, started)

    @app.post("/v1/completions", response_model=Completion, tags=["openai"],
              responses={**ERRORS, 200: stream_doc})
    async def completions(body: CompletionRequest, request: Request) -> Completion | StreamingResponse:
        """OpenAI text completion; `stream: true` answers with server-sent events."""
        generator, adapters = serving.require(), serving.require_adapters()
        adapters.resolve(body.model)  # an unknown name fails before any work
        limit = new_tokens(body.max_tokens, "max_tokens", bound, COMPLETION_DEFAULT)
        params = SamplingParams(limit, body.temperature, body.top_p, body.ignore_eos, (),
                                *_penalties(body))
        cid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        model = body.model or settings.model_name
        ids = await generator.encode(body.prompt_text())
        pieces = generator.stream_text(ids, params, body.stops(), body.stream,
                                       adapters.resolve(body.model))
        if body.stream:
            return _stream_response(_completion_chunks(pieces, cid, created, model, request))
        result = await until_disconnected(request, _collect(pieces))
        request.state.tokens = result.completion_tokens
        return Completion(id=cid, created=created, model=model, usage=_usage(result),
                          choices=[CompletionChoice(text=result.text, finish_reason=result.finish_reason)])

    @app.post("/v1/chat/completions", response_model=ChatCompletion, tags=["openai"],
              responses={**ERRORS, 200: stream_doc})
    async def chat_completions(body: ChatCompletionRequest,
                               request: Request) -> ChatCompletion | StreamingResponse:
        """OpenAI chat completion with the model's chat template; `stream: true` for SSE."""
        generator, chat = serving.require_chat()
        adapters = serving.require_adapters()
        adapters.resolve(body.model)
        field, requested = body.requested_tokens()
        limit = new_tokens(requested, field, bound, bound)
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        ids = await generator.encode(chat.render(messages), special=False)
        params = SamplingParams(limit, body.temperature, body.top_p, body.ignore_eos, chat.stop_ids,
                                *_penalties(body))
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        model = body.model or settings.model_name
        pieces = generator.stream_text(ids, params, body.stops(), body.stream,
                                       adapters.resolve(body.model))
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return _stream_response(_chat_chunks(pieces, cid, created, model, usage, request))
        result = await until_disconnected(request, _collect(pieces))
        request.state.tokens = result.completion_tokens
        return ChatCompletion(id=cid, created=created, model=model, usage=_usage(result), choices=[
            ChatChoice(message=ChatMessage(content=result.text), finish_reason=result.finish_reason)])
