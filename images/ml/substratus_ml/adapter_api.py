"""``POST /v1/load_lora_adapter`` and ``POST /v1/unload_lora_adapter``: vLLM's runtime adapter API.

This project's optional extension of the serve contract (a server without it
still keeps the contract; the control plane then falls back to copying
adapters under ``SUBSTRATUS_ADAPTERS_DIR`` and restarting). Bodies are vLLM's
(``{"lora_name", "lora_path"}``, ``{"lora_name"}``); a success answers 200
with a JSON body whose ``message`` is vLLM's text, errors are OpenAI-shaped
with a stable ``error.code`` (:mod:`substratus_ml.adapter_errors`). Both need
the bearer token when the server has one, like every ``/v1`` path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from substratus_ml.adapters import AdapterRegistry
from substratus_ml.lora_bank import Adapter
from substratus_ml.schemas import (AdapterAnswer, ErrorBody, LoadAdapterRequest, ModelCard,
                                   UnloadAdapterRequest)

LOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Not a PEFT LoRA adapter (`not_a_peft_adapter`), not "
          "for this base model or using features not served (`adapter_incompatible`), or a bad "
          "name (`invalid_adapter_name`)."},
    404: {"model": ErrorBody, "description": "lora_path does not exist (`adapter_path_not_found`)."},
    409: {"model": ErrorBody, "description": "The name is taken (`adapter_already_loaded`) or "
          "SUBSTRATUS_MAX_ADAPTERS are loaded (`too_many_adapters`)."},
    503: {"model": ErrorBody, "description": "The base model is not loaded yet."}}
UNLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No adapter of that name is loaded (`adapter_not_loaded`)."},
    503: LOAD_ERRORS[503]}


def add_adapter_routes(app: FastAPI, require: Callable[[], AdapterRegistry], base_name: str) -> None:
    def answer(adapter: Adapter, verb: str) -> AdapterAnswer:
        card = ModelCard(id=adapter.name, created=0, root=adapter.path, parent=base_name)
        return AdapterAnswer(message=f"Success: LoRA adapter '{adapter.name}' {verb} successfully.",
                             model=card, rank=adapter.rank, modules=adapter.modules,
                             load_seconds=round(adapter.load_seconds, 4) if verb == "added" else None)

    @app.post("/v1/load_lora_adapter", response_model=AdapterAnswer, tags=["adapters"],
              responses=LOAD_ERRORS)
    async def load_lora_adapter(body: LoadAdapterRequest) -> AdapterAnswer:
        """Load a PEFT LoRA adapter; requests then use it with `model` = `lora_name`.

        Extension of this project (vLLM's endpoint and body). Rows of different adapters
        and of the base model are decoded together in one batch."""
        adapter = await require().load(body.lora_name, body.lora_path)
        print(f"adapter {adapter.name!r} loaded from {adapter.path} (rank {adapter.rank}, "
              f"{adapter.modules} modules, {adapter.load_seconds:.2f} s)", flush=True)
        return answer(adapter, "added")

    @app.post("/v1/unload_lora_adapter", response_model=AdapterAnswer, tags=["adapters"],
              responses=UNLOAD_ERRORS)
    async def unload_lora_adapter(body: UnloadAdapterRequest) -> AdapterAnswer:
        """Unload an adapter: new requests naming it get 404; those already admitted finish."""
        adapter = await require().unload(body.lora_name)
        print(f"adapter {adapter.name!r} unloaded", flush=True)
        return answer(adapter, "removed")
