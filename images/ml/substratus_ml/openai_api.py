"""OpenAI-compatible ``/v1/completions``, ``/v1/chat/completions`` and ``/v1/models``.

Lets existing clients (the official ``openai`` SDK, LangChain, ...) talk to a
Substratus model server unchanged. Unlike ``/generate``, the returned text is
the completion alone, per OpenAI. Chat prompts use the model's chat template,
or a plain transcript for base models without one (:mod:`substratus_ml.chat`).
Streams are server-sent events ending with ``data: [DONE]``; an error after
the stream has begun (the request's deadline passed, the model failed) arrives
as a ``data: {"error": ...}`` event, as vLLM sends it.
"""

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from substratus_ml.chat import ChatFormat
from substratus_ml.disconnect import until_disconnected
from substratus_ml.engine import SamplingParams
from substratus_ml.generation import DeadlineExceeded, GenerationError, Generator, Result
from substratus_ml.schemas import (ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk,
                                   ChatDelta, ChatMessage, Completion, CompletionChoice, ModelCard,
                                   ModelList, Usage, make_schemas)
from substratus_ml.settings import ServeSettings

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The prompt has more tokens than the server accepts."},
    429: {"description": "Too many requests are waiting; retry after `Retry-After` seconds."},
    503: {"description": "The model is not loaded yet."},
    504: {"description": "The request ran past SUBSTRATUS_REQUEST_TIMEOUT."}}


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
        text, reason = (item, None) if isinstance(item, str) else ("", item.finish_reason)
        if isinstance(item, Result):
            request.state.tokens = item.completion_tokens
        yield _event(Completion(id=cid, created=created, model=model, choices=[
            CompletionChoice(text=text, finish_reason=reason)]))  # type: ignore[arg-type]


async def _chat_chunks(pieces: AsyncIterator[str | Result], cid: str, created: int, model: str,
                       usage: bool, request: Request) -> AsyncIterator[str]:
    def chunk(delta: ChatDelta, reason: str | None = None) -> str:
        return _event(ChatCompletionChunk(id=cid, created=created, model=model, choices=[
            ChatChunkChoice(delta=delta, finish_reason=reason)]))  # type: ignore[arg-type]

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


def _penalties(body: Any) -> tuple[float, float, float]:
    """(repetition, frequency, presence): SamplingParams' fields after stop_token_ids."""
    return body.repetition_penalty, body.frequency_penalty, body.presence_penalty


async def _collect(pieces: AsyncIterator[str | Result]) -> Result:
    result = None
    async for item in pieces:
        if isinstance(item, Result):
            result = item
    assert result is not None  # stream_text always ends with a Result
    return result


def add_openai_routes(app: FastAPI, require: Callable[[], Generator],
                      require_chat: Callable[[], tuple[Generator, ChatFormat]],
                      settings: ServeSettings) -> None:
    schemas = make_schemas(settings.max_new_tokens)
    CompletionRequest, ChatRequest = schemas.completion, schemas.chat
    started = int(time.time())
    stream_doc = {"content": {"text/event-stream": {}}, "description": "The answer, or SSE "
                  "chunks ending with `data: [DONE]` when stream is true."}

    @app.get("/v1/models", response_model=ModelList, tags=["openai"])
    def models() -> ModelList:
        """The one served model (OpenAI list format)."""
        return ModelList(data=[ModelCard(id=settings.model_name, created=started)])

    @app.post("/v1/completions", response_model=Completion, tags=["openai"],
              responses={**ERRORS, 200: stream_doc})
    async def completions(body: CompletionRequest, request: Request):  # type: ignore[no-untyped-def, valid-type]
        """OpenAI text completion; `stream: true` answers with server-sent events."""
        generator = require()
        params = SamplingParams(body.max_tokens, body.temperature, body.top_p,  # type: ignore[attr-defined]
                                body.ignore_eos, (), *_penalties(body))  # type: ignore[attr-defined]
        cid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        model = body.model or settings.model_name  # type: ignore[attr-defined]
        ids = await generator.encode(body.prompt_text())  # type: ignore[attr-defined]
        pieces = generator.stream_text(ids, params, body.stops(), body.stream)  # type: ignore[attr-defined]
        if body.stream:  # type: ignore[attr-defined]
            return _stream_response(_completion_chunks(pieces, cid, created, model, request))
        result = await until_disconnected(request, _collect(pieces))
        request.state.tokens = result.completion_tokens
        return Completion(id=cid, created=created, model=model, usage=_usage(result),
                          choices=[CompletionChoice(text=result.text,
                                                    finish_reason=result.finish_reason)])  # type: ignore[arg-type]

    @app.post("/v1/chat/completions", response_model=ChatCompletion, tags=["openai"],
              responses={**ERRORS, 200: stream_doc})
    async def chat_completions(body: ChatRequest, request: Request):  # type: ignore[no-untyped-def, valid-type]
        """OpenAI chat completion with the model's chat template; `stream: true` for SSE."""
        generator, chat = require_chat()
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]  # type: ignore[attr-defined]
        ids = await generator.encode(chat.render(messages), special=False)
        params = SamplingParams(body.token_limit(), body.temperature, body.top_p,  # type: ignore[attr-defined]
                                body.ignore_eos, chat.stop_ids, *_penalties(body))  # type: ignore[attr-defined]
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        model = body.model or settings.model_name  # type: ignore[attr-defined]
        pieces = generator.stream_text(ids, params, body.stops(), body.stream)  # type: ignore[attr-defined]
        if body.stream:  # type: ignore[attr-defined]
            usage = bool(body.stream_options and body.stream_options.include_usage)  # type: ignore[attr-defined]
            return _stream_response(_chat_chunks(pieces, cid, created, model, usage, request))
        result = await until_disconnected(request, _collect(pieces))
        request.state.tokens = result.completion_tokens
        return ChatCompletion(id=cid, created=created, model=model, usage=_usage(result), choices=[
            ChatChoice(message=ChatMessage(content=result.text),
                       finish_reason=result.finish_reason)])  # type: ignore[arg-type]
