"""The model server's FastAPI app: contract endpoints, health, docs, metrics, OpenAI routes.

``create_app`` takes the settings and a *loader* (a callable returning the
loaded model) so tests can hand in a tiny in-memory model. The model is loaded
on a background thread at start-up: ``/healthz`` answers at once, ``/readyz``
and the generation endpoints answer 503 until the model is ready.

Errors map to HTTP status in one place (``ERROR_STATUS``) and answer
OpenAI's error shape (``{"error": {"message", "type", "param", "code"}}``) with
the message also as ``detail``; request validation failures are 422 with a
readable ``message`` next to FastAPI's ``detail``. The body bound and the
bearer token sit in front of everything (:mod:`substratus_ml.guard`).

LoRA adapters (:mod:`substratus_ml.adapters`): those under
``SUBSTRATUS_ADAPTERS_DIR`` are loaded after the model and before ``/readyz``
turns 200; more are loaded and unloaded at run time through
:mod:`substratus_ml.adapter_api`.
"""

import sys
import threading
from typing import Any
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from substratus_ml import __version__
from substratus_ml.accesslog import AccessLog
from substratus_ml.adapter_api import add_adapter_routes
from substratus_ml.adapter_errors import (AdapterAlreadyLoaded, AdapterIncompatible, AdapterNameInvalid,
                                          AdapterNotLoaded, AdapterPathNotFound, NotAPeftAdapter,
                                          TooManyAdapters, UnknownModel)
from substratus_ml.adapters import AdapterLimits, AdapterRegistry
from substratus_ml.chat import ChatFormat, ChatTemplateError
from substratus_ml.disconnect import ClientGone, until_disconnected
from substratus_ml.engine import BatchEngine, EngineConfig, SamplingParams
from substratus_ml.generation import (DeadlineExceeded, EngineUnavailable, GenerationError, Generator,
                                      Overloaded, PromptTooLong, TooManyNewTokens, new_tokens)
from substratus_ml.guard import Guard
from substratus_ml.loading import LoadedModel
from substratus_ml.lora_bank import Adapter
from substratus_ml.metrics import CONTENT_TYPE, ServerMetrics
from substratus_ml.offline_docs import add_offline_docs
from substratus_ml.openai_api import add_openai_routes
from substratus_ml.schemas import (GENERATE_DEFAULT, TOKEN_FIELDS, ErrorBody, GenerateRequest,
                                   GenerateResponse, Health, Info)
from substratus_ml.settings import ServeSettings


class ModelNotReady(Exception):
    """The model is still loading, or failed to load."""

    code = "model_not_ready"


ERROR_STATUS: dict[type[Exception], int] = {
    ModelNotReady: 503, GenerationError: 500, PromptTooLong: 400, TooManyNewTokens: 400,
    ChatTemplateError: 400, Overloaded: 429, EngineUnavailable: 503, DeadlineExceeded: 504,
    ClientGone: 499, UnknownModel: 404, AdapterPathNotFound: 404, NotAPeftAdapter: 400,
    AdapterIncompatible: 400, AdapterNameInvalid: 400, AdapterAlreadyLoaded: 409,
    TooManyAdapters: 409, AdapterNotLoaded: 404,
}
REJECT_REASON: dict[type[Exception], str] = {
    PromptTooLong: "prompt_too_long", TooManyNewTokens: "too_many_new_tokens",
    Overloaded: "queue_full", ChatTemplateError: "bad_chat", UnknownModel: "unknown_model",
}
RETRY_AFTER_S = 1


@dataclass
class ModelSlot:
    """What the routes share: the engine once loaded, or why it is not there."""

    metrics: ServerMetrics
    loaded: LoadedModel | None = None
    engine: BatchEngine | None = None
    generator: Generator | None = None
    chat: ChatFormat | None = None
    adapters: AdapterRegistry | None = None
    error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def require(self) -> Generator:
        if self.generator is None:
            why = f"model failed to load: {self.error}" if self.error else "model is still loading"
            raise ModelNotReady(f"{why}; poll GET /readyz until it returns 200")
        return self.generator

    def require_chat(self) -> tuple[Generator, ChatFormat]:
        generator = self.require()
        assert self.chat is not None
        return generator, self.chat

    def require_adapters(self) -> AdapterRegistry:
        self.require()
        assert self.adapters is not None
        return self.adapters

    def loaded_adapters(self) -> list[Adapter]:
        return self.adapters.adapters() if self.adapters is not None else []

    def base_facts(self) -> tuple[str | None, int | None]:
        """(the base model's directory, max model len) for /v1/models, once loaded."""
        source = str(self.loaded.source) if self.loaded else None
        return source, self.engine.max_len if self.engine else None


def _start_engine(slot: ModelSlot, settings: ServeSettings, loaded: LoadedModel) -> None:
    config = EngineConfig(max_batch=settings.max_batch, max_model_len=settings.max_model_len,
                          max_queue=settings.max_queue, cuda_graphs=settings.cuda_graphs)
    engine = BatchEngine(loaded, config, observer=slot.metrics)
    prompt_limit = min(settings.max_prompt_tokens or engine.max_len - 1, engine.max_len - 1)
    engine.start()
    slot.chat = ChatFormat(loaded.tokenizer)
    slot.loaded, slot.engine = loaded, engine
    limits = AdapterLimits(settings.adapters_dir, settings.max_adapters, settings.max_lora_rank)
    slot.adapters = AdapterRegistry(settings.model_name, engine, loaded.model, limits)
    slot.adapters.load_directory()  # before the generator is set: /readyz waits for them
    slot.generator = Generator(engine, loaded.tokenizer, prompt_limit, settings.request_timeout_s)


def _load_into(slot: ModelSlot, settings: ServeSettings, loader: Callable[[], LoadedModel],
               on_failure: Callable[[str], None]) -> None:
    try:
        loaded = loader()
        _start_engine(slot, settings, loaded)
        assert slot.engine is not None
        print(f"model loaded from {loaded.source} ({loaded.kind}, {loaded.model.dtype}, "
              f"{loaded.model.device}); max batch {settings.max_batch}, "
              f"max model len {slot.engine.max_len}", flush=True)
    except Exception as exc:  # reported by /readyz and the generation endpoints
        slot.error = f"{type(exc).__name__}: {exc}"
        print(f"model load failed: {slot.error}", file=sys.stderr, flush=True)
        on_failure(slot.error)
    finally:
        slot.ready.set()


def _message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            parts.append(f"body is not valid JSON ({error.get('ctx', {}).get('error', 'decode error')})")
            continue
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def error_body(exc: Exception, status: int) -> dict[str, Any]:
    """OpenAI's error object (``code`` names the case) plus ``detail``, this server's older key."""
    kind = ("invalid_request_error" if status < 500 else "server_error") if status != 429 else (
        "rate_limit_error")
    return {"error": {"message": str(exc), "type": kind, "param": getattr(exc, "param", None),
                      "code": getattr(exc, "code", None)}, "detail": str(exc)}


def _add_error_handlers(app: FastAPI, metrics: ServerMetrics) -> None:
    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        metrics.reject("invalid")
        return JSONResponse(status_code=422, content={
            "message": _message(exc), "detail": jsonable_encoder(exc.errors())})

    async def mapped(request: Request, exc: Exception) -> JSONResponse:
        if type(exc) in REJECT_REASON:
            metrics.reject(REJECT_REASON[type(exc)])
        headers = {"Retry-After": str(RETRY_AFTER_S)} if isinstance(exc, Overloaded) else None
        status = ERROR_STATUS[type(exc)]
        return JSONResponse(status_code=status, content=error_body(exc, status), headers=headers)

    app.add_exception_handler(RequestValidationError, invalid)
    for error_type in ERROR_STATUS:
        app.add_exception_handler(error_type, mapped)


def create_app(settings: ServeSettings, loader: Callable[[], LoadedModel],
               on_load_failure: Callable[[str], None] = lambda error: None) -> FastAPI:
    slot = ModelSlot(ServerMetrics(settings.model_name))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _document_the_bound(app, settings.max_new_tokens)
        threading.Thread(target=_load_into, args=(slot, settings, loader, on_load_failure),
                         name="substratus-load", daemon=True).start()
        yield
        if slot.engine is not None:
            slot.engine.close()

    app = FastAPI(title="Substratus model server", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Contract endpoints (`/generate`) plus an OpenAI-compatible "
                              f"`/v1` API. Requests may ask for 1..{settings.max_new_tokens} "
                              "new tokens. With SUBSTRATUS_SERVER_TOKEN set, every path but "
                              "the docs, the health probes and /metrics needs "
                              "`Authorization: Bearer <token>`.")
    app.state.slot = slot
    _add_error_handlers(app, slot.metrics)
    add_offline_docs(app, "Substratus model server")
    _add_contract_routes(app, slot, settings)
    _add_metrics_route(app, slot)
    add_openai_routes(app, slot, settings)
    add_adapter_routes(app, slot.require_adapters, settings.model_name)
    app.add_middleware(Guard, max_body_bytes=settings.max_body_bytes, token=settings.token,
                       on_reject=slot.metrics.reject)
    app.add_middleware(AccessLog)
    return app


def _document_the_bound(app: FastAPI, bound: int) -> None:
    """Write SUBSTRATUS_MAX_NEW_TOKENS into the OpenAPI document as each token field's maximum.

    The request classes are static (the bound is configuration) and the handlers
    refuse more than it with 400; the document still tells clients the limit.
    Runs at start-up, once every route exists (FastAPI caches the document)."""
    components = app.openapi().get("components", {}).get("schemas", {})
    for name, fields in TOKEN_FIELDS.items():
        for field_name in fields:
            prop = components.get(name, {}).get("properties", {}).get(field_name)
            for option in prop.get("anyOf", [prop]) if prop is not None else []:
                if option.get("type") == "integer":
                    option["maximum"] = bound


def _add_metrics_route(app: FastAPI, slot: ModelSlot) -> None:
    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}},
                              "description": "Prometheus text exposition format."}})
    def metrics() -> Response:
        """Requests, tokens, time to first token, per-token latency, queue depth, batch size."""
        return Response(slot.metrics.exposition(), media_type=CONTENT_TYPE)


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The prompt has more tokens than the server accepts, "
          "or more new tokens were asked for than SUBSTRATUS_MAX_NEW_TOKENS."},
    404: {"model": ErrorBody, "description": "`model` names neither the base nor a loaded adapter."},
    429: {"model": ErrorBody, "description": "Too many requests are waiting; retry after "
          "`Retry-After` seconds."},
    503: {"model": ErrorBody, "description": "The model is not loaded yet."},
    504: {"model": ErrorBody, "description": "The request ran past SUBSTRATUS_REQUEST_TIMEOUT."}}


def _add_contract_routes(app: FastAPI, slot: ModelSlot, settings: ServeSettings) -> None:
    @app.post("/generate", response_model=GenerateResponse, responses=ERRORS)
    async def generate(body: GenerateRequest, request: Request) -> GenerateResponse:
        """Continue `prompt`; the generation starts with the exact prompt string."""
        generator, adapters = slot.require(), slot.require_adapters()
        adapters.resolve(body.model)  # an unknown name fails before any work
        limit = new_tokens(body.max_new_tokens, "max_new_tokens", settings.max_new_tokens,
                           GENERATE_DEFAULT)
        params = SamplingParams(limit, body.temperature, body.top_p,
                                repetition_penalty=body.repetition_penalty)
        ids = await generator.encode(body.prompt)
        result = await until_disconnected(request, generator.complete(
            ids, params, adapter=adapters.resolve(body.model)))
        request.state.tokens = result.completion_tokens
        return GenerateResponse(generation=body.prompt + result.text)

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        """Liveness: 200 while the process serves HTTP."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, responses={503: {"model": Health,
                                                                "description": "Not loaded yet."}})
    def readyz() -> JSONResponse:
        """Readiness: 200 once the model is loaded, 503 before (or if loading failed)."""
        if slot.generator is not None:
            return JSONResponse(Health(status="ready").model_dump())
        detail = slot.error or "model is loading"
        return JSONResponse(Health(status="not ready", detail=detail).model_dump(), status_code=503)

    @app.get("/info", response_model=Info)
    def info() -> Info:
        """What is served and its limits, with the training parameters when it was fine-tuned."""
        loaded, engine, generator = slot.loaded, slot.engine, slot.generator
        return Info(model=settings.model_name, source=str(settings.model_dir),
                    kind=loaded.kind if loaded else None,
                    context_length=loaded.context_length if loaded else None,
                    max_new_tokens=settings.max_new_tokens, max_batch=settings.max_batch,
                    max_model_len=engine.max_len if engine else None,
                    max_prompt_tokens=generator.max_prompt_tokens if generator else None,
                    chat_template=slot.chat.own_template if slot.chat else None,
                    training_params=loaded.training_params if loaded else None,
                    adapters=[a.name for a in slot.loaded_adapters()])
