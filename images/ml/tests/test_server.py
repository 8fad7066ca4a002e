"""The HTTP server: contract /generate, validation, offline docs, probes, OpenAI API."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from openai import OpenAI

from conftest import SERVER_SETTINGS, LiveServer
from substratus_ml.app import create_app
from substratus_ml.loading import LoadedModel

BOUND = SERVER_SETTINGS.max_new_tokens


def test_generate_begins_with_the_exact_prompt(live_server: LiveServer) -> None:
    for prompt in ["The quick brown fox", "  spaces  and\ttabs ", "unicode: café ☕", ""]:
        response = httpx.post(f"{live_server.url}/generate",
                              json={"prompt": prompt, "max_new_tokens": 8})
        assert response.status_code == 200, response.text
        assert response.json()["generation"].startswith(prompt)


def test_generate_is_deterministic(live_server: LiveServer) -> None:
    body = {"prompt": "Time flies", "max_new_tokens": 10}
    first = httpx.post(f"{live_server.url}/generate", json=body).json()
    assert httpx.post(f"{live_server.url}/generate", json=body).json() == first


@pytest.mark.parametrize("body, fragment", [
    ({"max_new_tokens": 5}, "prompt: Field required"),
    ({"prompt": 42, "max_new_tokens": 5}, "prompt: Input should be a valid string"),
    ({"prompt": "x", "max_new_tokens": "many"}, "max_new_tokens: Input should be a valid integer"),
    ({"prompt": "x", "max_new_tokens": 0}, "max_new_tokens: Input should be greater than or equal to 1"),
    ([1, 2], "Input should be a valid dictionary"),
])
def test_bad_bodies_are_422_with_a_message(live_server: LiveServer, body: object,
                                           fragment: str) -> None:
    response = httpx.post(f"{live_server.url}/generate", json=body)
    assert response.status_code == 422
    assert fragment in response.json()["message"]


def test_invalid_json_is_422(live_server: LiveServer) -> None:
    response = httpx.post(f"{live_server.url}/generate", content=b'{"prompt": "x",',
                          headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["message"]


def test_openapi_documents_the_bound(live_server: LiveServer) -> None:
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    for path in ["/generate", "/healthz", "/readyz", "/info", "/v1/completions", "/v1/models"]:
        assert path in spec["paths"]
    schemas = spec["components"]["schemas"]
    for schema, name in [("GenerateRequest", "max_new_tokens"), ("CompletionRequest", "max_tokens"),
                         ("ChatCompletionRequest", "max_tokens"),
                         ("ChatCompletionRequest", "max_completion_tokens")]:
        [field] = [f for f in schemas[schema]["properties"][name]["anyOf"] if f["type"] == "integer"]
        assert (field["minimum"], field["maximum"]) == (1, BOUND), (schema, name)


def test_docs_use_only_local_assets(live_server: LiveServer) -> None:
    html = httpx.get(f"{live_server.url}/docs").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and not [a for a in assets if not a.startswith("/")]
    assert "cdn" not in html.lower() and "https://" not in html
    for asset in assets:
        assert httpx.get(f"{live_server.url}{asset}").status_code == 200, asset


def test_probes_and_models(live_server: LiveServer) -> None:
    assert httpx.get(f"{live_server.url}/healthz").status_code == 200
    assert httpx.get(f"{live_server.url}/readyz").status_code == 200
    models = httpx.get(f"{live_server.url}/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "tiny-test"


def test_openai_sdk_completion(live_server: LiveServer) -> None:
    client = OpenAI(base_url=f"{live_server.url}/v1", api_key="unused")
    completion = client.completions.create(model="tiny-test", prompt="The quick brown",
                                           max_tokens=6, temperature=0)
    choice = completion.choices[0]
    assert completion.object == "text_completion" and choice.finish_reason in ("stop", "length")
    assert completion.usage is not None and completion.usage.completion_tokens <= 6
    generated = httpx.post(f"{live_server.url}/generate",
                           json={"prompt": "The quick brown", "max_new_tokens": 6}).json()
    assert generated["generation"] == "The quick brown" + choice.text  # completion only


def test_openai_sdk_streaming_matches_the_whole_completion(live_server: LiveServer) -> None:
    client = OpenAI(base_url=f"{live_server.url}/v1", api_key="unused")
    args = {"model": "tiny-test", "prompt": ["Never put off"], "max_tokens": 12, "temperature": 0}
    whole = client.completions.create(**args).choices[0].text
    chunks = list(client.completions.create(stream=True, **args))
    assert "".join(c.choices[0].text for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_stop_strings_cut_the_completion(live_server: LiveServer) -> None:
    client = OpenAI(base_url=f"{live_server.url}/v1", api_key="unused")
    args = {"model": "tiny-test", "prompt": "Time flies", "max_tokens": 20, "temperature": 0}
    whole = client.completions.create(**args).choices[0].text
    stop = whole[3:6]
    if not stop.strip():
        pytest.skip("the tiny model's completion is too short to cut")
    cut = client.completions.create(stop=[stop], **args).choices[0]
    assert cut.text == whole[: whole.index(stop)] and cut.finish_reason == "stop"
    streamed = client.completions.create(stop=stop, stream=True, **args)
    assert "".join(c.choices[0].text for c in streamed) == cut.text


def test_openai_errors_are_422(live_server: LiveServer) -> None:
    url = f"{live_server.url}/v1/completions"
    assert httpx.post(url, json={"prompt": ["a", "b"]}).status_code == 422


def test_more_new_tokens_than_the_limit_is_400_naming_it_never_clipped(live_server: LiveServer) -> None:
    """As vLLM answers: the handler refuses, with OpenAI's error shape and the limit named."""
    for path, body in [("/generate", {"prompt": "x", "max_new_tokens": BOUND + 1}),
                       ("/v1/completions", {"prompt": "x", "max_tokens": BOUND + 1}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                                 "max_completion_tokens": BOUND + 1})]:
        response = httpx.post(f"{live_server.url}{path}", json=body)
        assert response.status_code == 400, (path, response.text)
        error = response.json()["error"]
        assert error["code"] == "max_tokens_too_large" and error["type"] == "invalid_request_error"
        assert f"at most {BOUND} new tokens" in error["message"], error
        assert "SUBSTRATUS_MAX_NEW_TOKENS" in response.json()["detail"]
    at_limit = httpx.post(f"{live_server.url}/generate", json={"prompt": "x", "max_new_tokens": BOUND})
    assert at_limit.status_code == 200


def test_concurrent_requests_are_batched_and_match_serial(live_server: LiveServer,
                                                          tiny_model: LoadedModel) -> None:
    prompts = [f"The {word}" for word in ("quick", "early", "second", "lazy", "bird", "dog")]

    async def generate_all() -> list[str]:
        async with httpx.AsyncClient(base_url=live_server.url, timeout=60) as client:
            responses = await asyncio.gather(*[
                client.post("/generate", json={"prompt": p, "max_new_tokens": 10})
                for p in prompts])
        return [r.json()["generation"] for r in responses]

    batched = asyncio.run(generate_all())
    serial = [httpx.post(f"{live_server.url}/generate",
                         json={"prompt": p, "max_new_tokens": 10}).json()["generation"]
              for p in prompts]
    assert batched == serial
    engine = live_server.server.config.app.state.slot.engine  # type: ignore[attr-defined]
    assert engine.stats.largest_batch > 1


def test_not_ready_until_the_model_is_loaded(tiny_model: LoadedModel) -> None:
    release = threading.Event()

    def slow_loader() -> LoadedModel:
        release.wait(30)
        return tiny_model

    app = create_app(SERVER_SETTINGS, slow_loader)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        response = client.post("/generate", json={"prompt": "x", "max_new_tokens": 2})
        assert response.status_code == 503 and "loading" in response.json()["detail"]
        release.set()
        app.state.slot.ready.wait(30)
        assert client.get("/readyz").status_code == 200
        assert client.post("/generate", json={"prompt": "x", "max_new_tokens": 2}).status_code == 200


def test_failed_load_is_reported(tmp_path: Path) -> None:
    from substratus_ml.loading import load_model

    failures: list[str] = []
    app = create_app(SERVER_SETTINGS, lambda: load_model(tmp_path / "absent"), failures.append)
    with TestClient(app) as client:
        app.state.slot.ready.wait(30)
        response = client.get("/readyz")
        assert response.status_code == 503 and "does not exist" in response.json()["detail"]
    assert failures and "does not exist" in failures[0]


def test_one_log_line_per_request(live_server: LiveServer, capfd: pytest.CaptureFixture[str]) -> None:
    httpx.post(f"{live_server.url}/generate", json={"prompt": "The", "max_new_tokens": 3})
    # The server thread writes the line as the response completes: it may land just after we
    # see the response, so read the output for a moment rather than once.
    out, lines = "", []
    for _ in range(40):
        out += capfd.readouterr().out
        lines = [line for line in out.splitlines() if line.startswith("POST /generate 200")]
        if lines:
            break
        time.sleep(0.05)
    time.sleep(0.2)
    out += capfd.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("POST /generate 200")]
    assert len(lines) == 1 and re.search(r"\d+\.\dms tokens=\d+$", lines[0])
