"""Adapters over HTTP: the start-up directory, vLLM's load/unload endpoints, `model` routing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import NotFoundError, OpenAI

from conftest import LORA_PROMPT, LORA_TOKENS, SERVER_SETTINGS, LiveServer, Reference
from substratus_ml.app import create_app
from substratus_ml.loading import LoadedModel
from substratus_ml.peft_adapter import CONFIG_FILE

BASE = SERVER_SETTINGS.model_name


@pytest.fixture(scope="module")
def adapters_root(adapter_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A start-up directory: alpha, and a broken one that must not stop the server."""
    root = tmp_path_factory.mktemp("startup")
    shutil.copytree(adapter_dirs["alpha"], root / "alpha")
    (root / "broken").mkdir()
    (root / "broken" / CONFIG_FILE).write_text("{not json")
    return root


@pytest.fixture(scope="module")
def server(tiny_model: LoadedModel, adapters_root: Path) -> Iterator[LiveServer]:
    settings = dataclasses.replace(SERVER_SETTINGS, adapters_dir=adapters_root, max_adapters=3)
    with LiveServer(create_app(settings, lambda: tiny_model)) as live:
        yield live


def post(server: LiveServer, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=60)


def complete(server: LiveServer, model: str | None) -> Reference:
    body = {"prompt": LORA_PROMPT, "max_tokens": LORA_TOKENS, "temperature": 0,
            **({"model": model} if model else {})}
    response = post(server, "/v1/completions", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == (model or BASE)
    return Reference(answer["choices"][0]["text"], answer["usage"]["completion_tokens"])


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return str(error["message"])


def test_the_startup_directory_is_loaded_and_listed_after_the_base(
        server: LiveServer, adapters_root: Path, references: dict[str | None, Reference]) -> None:
    cards = httpx.get(f"{server.url}/v1/models").json()["data"]
    assert [c["id"] for c in cards] == [BASE, "alpha"]  # "broken" was refused, not fatal
    assert cards[0]["parent"] is None and cards[1]["parent"] == BASE
    assert cards[1]["root"] == str(adapters_root / "alpha")
    assert complete(server, "alpha") == references["alpha"]
    assert complete(server, BASE) == complete(server, None) == references[None]
    assert httpx.get(f"{server.url}/info").json()["adapters"] == ["alpha"]


def test_load_use_and_unload_at_run_time(server: LiveServer, adapter_dirs: dict[str, Path],
                                         references: dict[str | None, Reference]) -> None:
    loaded = post(server, "/v1/load_lora_adapter", {"lora_name": "beta",
                                                    "lora_path": str(adapter_dirs["beta"])})
    assert loaded.status_code == 200, loaded.text
    answer = loaded.json()
    assert answer["message"] == "Success: LoRA adapter 'beta' added successfully."
    assert answer["rank"] == 8 and answer["modules"] == 8 and answer["load_seconds"] > 0
    assert complete(server, "beta") == references["beta"]
    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    via_sdk = client.completions.create(model="beta", prompt=LORA_PROMPT, max_tokens=LORA_TOKENS,
                                        temperature=0)
    assert via_sdk.choices[0].text == references["beta"].text
    generated = post(server, "/generate", {"prompt": LORA_PROMPT, "max_new_tokens": LORA_TOKENS,
                                           "model": "beta"})
    assert generated.json()["generation"] == LORA_PROMPT + references["beta"].text
    chat = post(server, "/v1/chat/completions", {"model": "beta", "max_tokens": 4,
                                                 "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 200 and chat.json()["model"] == "beta"

    unloaded = post(server, "/v1/unload_lora_adapter", {"lora_name": "beta"})
    assert unloaded.status_code == 200, unloaded.text
    assert unloaded.json()["message"] == "Success: LoRA adapter 'beta' removed successfully."
    message = error_of(post(server, "/v1/completions", {"prompt": "x", "model": "beta"}), 404,
                      "model_not_found")
    assert f"it serves '{BASE}', 'alpha'" in message
    with pytest.raises(NotFoundError):
        client.completions.create(model="beta", prompt="x", max_tokens=2)
    assert [c["id"] for c in httpx.get(f"{server.url}/v1/models").json()["data"]] == [BASE, "alpha"]


def test_a_mixed_concurrent_load_matches_each_reference(
        server: LiveServer, adapter_dirs: dict[str, Path],
        references: dict[str | None, Reference]) -> None:
    assert post(server, "/v1/load_lora_adapter", {"lora_name": "gamma",
                                                  "lora_path": str(adapter_dirs["gamma"])}).status_code == 200
    models = [None, "alpha", "gamma"] * 3

    async def all_at_once() -> list[Reference]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            answers = await asyncio.gather(*[client.post("/v1/completions", json={
                "prompt": LORA_PROMPT, "max_tokens": LORA_TOKENS, "temperature": 0,
                **({"model": m} if m else {})}) for m in models])
        return [Reference(a.json()["choices"][0]["text"], a.json()["usage"]["completion_tokens"])
                for a in answers]

    try:
        assert asyncio.run(all_at_once()) == [references[m] for m in models]
    finally:
        assert post(server, "/v1/unload_lora_adapter", {"lora_name": "gamma"}).status_code == 200
    engine = server.server.config.app.state.slot.engine
    assert engine.stats.largest_batch > 1


@pytest.mark.parametrize("body, status, code, fragment", [
    ({"lora_name": "x", "lora_path": "/nowhere/at/all"}, 404, "adapter_path_not_found", "does not exist"),
    ({"lora_name": "x", "lora_path": "/a\u0000b"}, 404, "adapter_path_not_found", "not exist"),  # schemathesis
    ({"lora_name": "x", "lora_path": "/" + "x" * 5000}, 404, "adapter_path_not_found", "too long"),
    ({"lora_name": "x", "lora_path": "broken"}, 400, "not_a_peft_adapter", "could not be read as JSON"),
    ({"lora_name": "x", "lora_path": "/"}, 400, "not_a_peft_adapter", f"has no {CONFIG_FILE}"),
    ({"lora_name": "alpha", "lora_path": "alpha"}, 409, "adapter_already_loaded", "already loaded"),
    ({"lora_name": BASE, "lora_path": "alpha"}, 409, "adapter_already_loaded", "the base model's name"),
    ({"lora_name": "has space", "lora_path": "alpha"}, 400, "invalid_adapter_name", "lora_name"),
])
def test_load_errors_say_what_is_wrong(server: LiveServer, body: dict[str, str], status: int,
                                       code: str, fragment: str) -> None:
    assert fragment in error_of(post(server, "/v1/load_lora_adapter", body), status, code)


def test_an_adapter_for_another_model_is_400_naming_the_modules(
        server: LiveServer, adapter_dirs: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(adapter_dirs["alpha"], other)
    config = json.loads((other / CONFIG_FILE).read_text())
    (other / CONFIG_FILE).write_text(json.dumps({**config, "base_model_name_or_path": "llama"}))
    from safetensors.torch import load_file, save_file

    weights = load_file(str(other / "adapter_model.safetensors"))
    save_file({k.replace("attn.c_attn", "self_attn.q_proj"): v for k, v in weights.items()},
              str(other / "adapter_model.safetensors"))
    message = error_of(post(server, "/v1/load_lora_adapter", {"lora_name": "other", "lora_path": str(other)}),
                       400, "adapter_incompatible")
    assert "transformer.h.0.self_attn.q_proj" in message and "llama" in message


def test_unload_errors_and_the_adapter_limit(server: LiveServer, adapter_dirs: dict[str, Path]) -> None:
    assert "is not loaded" in error_of(post(server, "/v1/unload_lora_adapter", {"lora_name": "nope"}),
                                       404, "adapter_not_loaded")
    assert "base model" in error_of(post(server, "/v1/unload_lora_adapter", {"lora_name": BASE}),
                                    404, "adapter_not_loaded")
    assert post(server, "/v1/unload_lora_adapter", {}).status_code == 422
    names = ["b1", "b2"]  # alpha + 2 = the limit of 3
    try:
        for name in names:
            response = post(server, "/v1/load_lora_adapter", {"lora_name": name,
                                                              "lora_path": str(adapter_dirs["beta"])})
            assert response.status_code == 200, response.text
        assert "SUBSTRATUS_MAX_ADAPTERS" in error_of(post(server, "/v1/load_lora_adapter", {
            "lora_name": "b3", "lora_path": str(adapter_dirs["beta"])}), 409, "too_many_adapters")
    finally:
        for name in names:
            post(server, "/v1/unload_lora_adapter", {"lora_name": name})


def test_an_unknown_model_is_404_listing_the_names(server: LiveServer) -> None:
    for path, body in [("/v1/completions", {"prompt": "x", "model": "gpt-4"}),
                       ("/v1/chat/completions", {"model": "gpt-4",
                                                 "messages": [{"role": "user", "content": "x"}]}),
                       ("/generate", {"prompt": "x", "model": "gpt-4"})]:
        message = error_of(post(server, path, body), 404, "model_not_found")
        assert "'gpt-4' does not exist" in message and f"'{BASE}', 'alpha'" in message, path


def test_the_endpoints_are_documented(server: LiveServer) -> None:
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    load = paths["/v1/load_lora_adapter"]["post"]
    assert {"200", "400", "404", "409"} <= set(load["responses"])
    assert "/v1/unload_lora_adapter" in paths


def test_a_request_resolved_before_an_unload_is_refused_not_run(server: LiveServer) -> None:
    """The route resolves `model`, awaits the tokenizer, then submits: an unload in between
    must turn into 404, never into a row whose adapter slot was freed."""
    from substratus_ml.adapter_errors import UnknownModel
    from substratus_ml.engine import SamplingParams
    from substratus_ml.lora_bank import Adapter

    generator = server.server.config.app.state.slot.generator
    gone = Adapter("gone", "/x", rank=4, modules=1, slot=0, unloaded=True)

    async def submit() -> None:
        generator.stream_text([1, 2, 3], SamplingParams(2), adapter=gone)

    with pytest.raises(UnknownModel, match="'gone' was unloaded"):
        asyncio.run(submit())


def test_an_empty_model_means_the_base_as_in_vllm(server: LiveServer,
                                                  references: dict[str | None, Reference]) -> None:
    response = post(server, "/v1/completions", {"prompt": LORA_PROMPT, "max_tokens": LORA_TOKENS,
                                                "temperature": 0, "model": ""})
    assert response.json()["choices"][0]["text"] == references[None].text
