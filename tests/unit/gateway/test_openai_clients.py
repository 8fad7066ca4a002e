"""The gateway as OpenAI clients see it: the official `openai` SDK against a live gateway
in front of live (fake) model servers, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import openai
import pytest

from substratus.gateway import Gateway, GatewaySettings, KeyStore
from tests.unit.gateway.fakes import FakeBackends, FakeModelServer, LiveServer


class Setup:
    def __init__(self, stack: ExitStack, tmp_path: Path) -> None:
        self.stack = stack
        self.keys = KeyStore(tmp_path / "keys")
        self.key = self.keys.create("tests").key
        self.a = stack.enter_context(LiveServer(FakeModelServer("up-a")))
        self.b = stack.enter_context(LiveServer(FakeModelServer("up-b", token="replica-token-0123456789")))
        self.backends = FakeBackends(ready={"tiny": [self.a.replica()],
                                            "team-a/tiny": [self.b.replica(token="replica-token-0123456789")]},
                                     asleep={"sleepy": [self.a.replica("sleepy-1")]}, start_delay=0.2)
        self.gateway = stack.enter_context(LiveServer(Gateway(self.backends, keys=self.keys)))
        self.client = openai.OpenAI(base_url=self.gateway.url + "/v1", api_key=self.key, max_retries=0)


@pytest.fixture()
def setup(tmp_path: Path) -> Iterator[Setup]:
    with ExitStack() as stack:
        yield Setup(stack, tmp_path)


def test_list_names_every_model_running_or_not(setup: Setup) -> None:
    models = {m.id: m for m in setup.client.models.list()}
    assert sorted(models) == ["sleepy", "team-a/tiny", "tiny"]
    assert models["sleepy"].model_extra == {"state": "stopped", "parent": None}
    assert setup.client.models.retrieve("team-a/tiny").id == "team-a/tiny"


def test_completion_and_chat_reach_the_named_model(setup: Setup) -> None:
    done = setup.client.completions.create(model="tiny", prompt="hello", max_tokens=4)
    assert done.choices[0].text == "from up-a" and done.model == "tiny"
    chat = setup.client.chat.completions.create(model="team-a/tiny", messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content == "from up-b"


def test_the_client_key_stays_at_the_gateway_and_the_replica_token_goes_on(setup: Setup) -> None:
    setup.client.completions.create(model="team-a/tiny", prompt="hello", max_tokens=4)
    setup.client.completions.create(model="tiny", prompt="hello", max_tokens=4)
    assert setup.b.app.auth == ["Bearer replica-token-0123456789"]
    assert setup.a.app.auth == [""]


def test_streams_arrive_chunk_by_chunk(setup: Setup) -> None:
    stream = setup.client.chat.completions.create(model="tiny", stream=True,
                                                  messages=[{"role": "user", "content": "hi"}])
    assert [c.choices[0].delta.content for c in stream] == [" t0", " t1", " t2"]
    stream2 = setup.client.completions.create(model="tiny", prompt="x", stream=True)
    assert "".join(c.choices[0].text for c in stream2) == " t0 t1 t2"


def test_a_wrong_key_is_401(setup: Setup) -> None:
    client = openai.OpenAI(base_url=setup.gateway.url + "/v1", api_key="sk-sub-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.completions.create(model="tiny", prompt="hello")
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    assert setup.a.app.hits == []


def test_no_key_is_401_with_the_openai_error_shape(setup: Setup) -> None:
    answer = httpx.get(f"{setup.gateway.url}/v1/models")
    assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer")
    assert set(answer.json()["error"]) == {"message", "type", "param", "code"}


def test_unknown_model_is_404_naming_the_known_ones(setup: Setup) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        setup.client.completions.create(model="gpt-4o", prompt="hello")
    body = caught.value.body
    assert body["code"] == "model_not_found" and body["param"] == "model"  # type: ignore[index]
    assert "sleepy, team-a/tiny, tiny" in body["message"]  # type: ignore[index]


def test_a_stopped_model_is_woken_and_answers(setup: Setup) -> None:
    done = setup.client.completions.create(model="sleepy", prompt="hello", max_tokens=4)
    assert done.choices[0].text == "from up-a"
    assert setup.backends.wakes == ["sleepy"]
    assert {m.id: m.model_extra["state"] for m in setup.client.models.list()}["sleepy"] == "running"  # type: ignore[index]


def test_64_concurrent_requests_at_a_model_at_zero_start_it_once(setup: Setup) -> None:
    async def burst() -> list[str]:
        client = openai.AsyncOpenAI(base_url=setup.gateway.url + "/v1", api_key=setup.key, max_retries=0)
        async with client:
            done = await asyncio.gather(*(client.completions.create(model="sleepy", prompt="hi", max_tokens=4)
                                          for _ in range(64)))
        return [d.choices[0].text for d in done]

    assert asyncio.run(burst()) == ["from up-a"] * 64
    assert setup.backends.wakes == ["sleepy"]


def test_generate_is_routed_by_path(setup: Setup) -> None:
    headers = {"Authorization": f"Bearer {setup.key}"}
    answer = httpx.post(f"{setup.gateway.url}/models/team-a/tiny/generate", headers=headers,
                        json={"prompt": "hi", "max_new_tokens": 4})
    assert answer.status_code == 200 and answer.json() == {"generation": "hi from up-b"}
    assert setup.b.app.hits == ["/generate"]
    missing = httpx.post(f"{setup.gateway.url}/models/nope/generate", headers=headers, json={"prompt": "hi"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_health_needs_no_key(setup: Setup) -> None:
    assert httpx.get(f"{setup.gateway.url}/healthz").json() == {"ok": True}
