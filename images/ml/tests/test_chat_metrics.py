"""OpenAI chat completions (template, streaming, stop) and the Prometheus metrics."""

from __future__ import annotations

import asyncio
import copy

import httpx
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from conftest import LiveServer
from substratus_ml.chat import TRANSCRIPT_TEMPLATE, ChatFormat
from substratus_ml.loading import LoadedModel

MESSAGES = [{"role": "system", "content": "You speak in fortunes."},
            {"role": "user", "content": "What will happen today?"}]


def client(server: LiveServer) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused")


def test_chat_answers_with_the_openai_sdk(live_server: LiveServer) -> None:
    done = client(live_server).chat.completions.create(model="tiny-test", messages=MESSAGES,  # type: ignore[arg-type]
                                                       max_tokens=12, temperature=0)
    choice = done.choices[0]
    assert done.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert done.usage is not None and 0 < done.usage.completion_tokens <= 12
    assert done.usage.prompt_tokens > 10  # the whole rendered conversation


def test_chat_streaming_matches_the_whole_answer(live_server: LiveServer) -> None:
    args = {"model": "tiny-test", "messages": MESSAGES, "max_tokens": 12, "temperature": 0}
    whole = client(live_server).chat.completions.create(**args).choices[0].message.content  # type: ignore[call-overload]
    chunks = list(client(live_server).chat.completions.create(
        stream=True, stream_options={"include_usage": True}, **args))  # type: ignore[call-overload]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole and text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_a_model_without_a_template_gets_a_plain_transcript(tiny_model: LoadedModel) -> None:
    chat = ChatFormat(tiny_model.tokenizer)
    assert not chat.own_template and chat.stop_ids == ()
    assert chat.render(MESSAGES) == ("System: You speak in fortunes.\n\n"
                                     "User: What will happen today?\n\nAssistant:")


def test_a_model_with_a_template_uses_it_and_stops_at_its_end_of_turn(tiny_model: LoadedModel) -> None:
    tok = copy.deepcopy(tiny_model.tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<end_of_turn>"]})
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}<end_of_turn>"
                         "{% endfor %}{% if add_generation_prompt %}<model>{% endif %}")
    chat = ChatFormat(tok)
    assert chat.own_template and chat.stop_ids == (tok.convert_tokens_to_ids("<end_of_turn>"),)
    assert chat.render(MESSAGES[1:]) == "<user>What will happen today?<end_of_turn><model>"
    assert TRANSCRIPT_TEMPLATE not in chat.render(MESSAGES[1:])


def _samples(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics").text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def test_metrics_count_requests_tokens_and_latencies(live_server: LiveServer) -> None:
    response = httpx.get(f"{live_server.url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    before = _samples(live_server.url)

    async def burst() -> None:
        async with httpx.AsyncClient(base_url=live_server.url, timeout=60) as http:
            await asyncio.gather(*[http.post("/v1/completions", json={
                "prompt": f"The {i}", "max_tokens": 8, "ignore_eos": True}) for i in range(6)])

    asyncio.run(burst())
    after = _samples(live_server.url)
    assert after["substratus_requests_total"] - before.get("substratus_requests_total", 0) == 6
    assert after["substratus_generation_tokens_total"] - before.get("substratus_generation_tokens_total", 0) == 48
    assert after["substratus_prompt_tokens_total"] > before.get("substratus_prompt_tokens_total", 0)
    assert after["substratus_time_to_first_token_seconds_count"] - \
        before.get("substratus_time_to_first_token_seconds_count", 0) == 6
    assert after["substratus_time_per_output_token_seconds_count"] - \
        before.get("substratus_time_per_output_token_seconds_count", 0) == 42
    for gauge in ("substratus_num_requests_waiting", "substratus_num_requests_running"):
        assert after[gauge] == 0  # all finished
