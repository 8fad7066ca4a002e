"""OpenAI-compatible ``/v1/completions`` and ``/v1/models``.

Lets existing clients (the official ``openai`` SDK, LangChain, ...) talk to a
Substratus model server unchanged. Only the legacy text-completion API is
offered: the served models are plain causal LMs without a chat template.
Unlike ``/generate``, the returned text is the completion alone, per OpenAI.
"""

import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from substratus_ml.engine import SamplingParams
from substratus_ml.generation import Generator, Result
from substratus_ml.schemas import (Completion, CompletionChoice, ModelCard, ModelList, Usage,
                                   make_schemas)
from substratus_ml.settings import ServeSettings


def _usage(result: Result) -> Usage:
    return Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                 total_tokens=result.prompt_tokens + result.completion_tokens)


def _chunk(completion_id: str, created: int, model: str, text: str,
           finish_reason: str | None) -> str:
    body = Completion(id=completion_id, created=created, model=model, choices=[
        CompletionChoice(text=text, finish_reason=finish_reason)])  # type: ignore[arg-type]
    return f"data: {body.model_dump_json()}\n\n"


async def _sse(pieces: AsyncIterator[str | Result], completion_id: str, created: int,
               model: str, request: Request) -> AsyncIterator[str]:
    async for item in pieces:
        if isinstance(item, Result):
            request.state.tokens = item.completion_tokens
            yield _chunk(completion_id, created, model, "", item.finish_reason)
        else:
            yield _chunk(completion_id, created, model, item, None)
    yield "data: [DONE]\n\n"


def add_openai_routes(app: FastAPI, require: Callable[[], Generator],
                      settings: ServeSettings) -> None:
    CompletionRequest = make_schemas(settings.max_new_tokens).completion
    started = int(time.time())
    not_ready: dict[int | str, dict[str, Any]] = {503: {"description": "The model is not loaded yet."}}

    @app.get("/v1/models", response_model=ModelList, tags=["openai"])
    def models() -> ModelList:
        """The one served model (OpenAI list format)."""
        return ModelList(data=[ModelCard(id=settings.model_name, created=started)])

    @app.post("/v1/completions", response_model=Completion, tags=["openai"],
              responses={**not_ready, 200: {"content": {"text/event-stream": {}},
                                            "description": "A completion, or SSE chunks "
                                            "ending with `data: [DONE]` when stream is true."}})
    async def completions(body: CompletionRequest, request: Request):  # type: ignore[no-untyped-def, valid-type]
        """OpenAI text completion; `stream: true` answers with server-sent events."""
        generator = require()
        params = SamplingParams(body.max_tokens, body.temperature, body.top_p,  # type: ignore[attr-defined]
                                body.ignore_eos)  # type: ignore[attr-defined]
        completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        model = body.model or settings.model_name  # type: ignore[attr-defined]
        pieces = generator.stream_text(body.prompt_text(), params, body.stops())  # type: ignore[attr-defined]
        if body.stream:  # type: ignore[attr-defined]
            return StreamingResponse(_sse(pieces, completion_id, created, model, request),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        result = None
        async for item in pieces:
            if isinstance(item, Result):
                result = item
        assert result is not None
        request.state.tokens = result.completion_tokens
        return Completion(id=completion_id, created=created, model=model, usage=_usage(result),
                          choices=[CompletionChoice(text=result.text,
                                                    finish_reason=result.finish_reason)])  # type: ignore[arg-type]
