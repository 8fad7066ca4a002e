"""`make demo` end to end, then real clients against what it serves."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
from openai import OpenAI

from tests.e2e.conftest import REPO, Demo

PROMPT = "ROMEO:"


def gen(url: str, prompt: str = PROMPT, n: int = 32) -> str:
    resp = httpx.post(f"{url}/generate", json={"prompt": prompt, "max_new_tokens": n}, timeout=120)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["generation"])


def test_demo_prints_urls_and_both_generations(demo: Demo) -> None:
    out = demo.output
    assert "Fine-tuned model server: http://127.0.0.1:" in out
    assert "base (fortunes)" in out and "fine-tuned (Shakespeare)" in out
    assert re.search(r"Notebook: http://127\.0\.0\.1:\d+/\?token=\w+", out)


SHAKESPEARE_WORDS = {"thou", "thee", "thy", "thine", "lord", "sir", "king", "hath", "doth", "art", "shall",
                     "my", "o", "i'll", "'tis", "good", "love", "your", "you", "i", "and", "the", "to"}


def shakespeare_score(url: str, samples: int = 20) -> float:
    """Share of generated words that are common in the plays (sampled, so several runs)."""
    words: list[str] = []
    for i in range(samples):
        body = {"prompt": PROMPT, "max_new_tokens": 48, "temperature": 0.8, "top_p": 0.95}
        resp = httpx.post(f"{url}/generate", json=body, timeout=120)
        assert resp.status_code == 200
        words += resp.json()["generation"][len(PROMPT):].lower().split()
    return sum(w.strip(".,;:!?") in SHAKESPEARE_WORDS for w in words) / max(1, len(words))


def test_generate_keeps_the_contract_and_fine_tuning_moved_it_towards_the_dataset(demo: Demo) -> None:
    tuned = demo.status("server", "tiny-gpt-shakespeare")["url"]
    base = demo.status("server", "tiny-gpt")["url"]
    a, b = gen(base), gen(tuned)
    assert a.startswith(PROMPT) and b.startswith(PROMPT)
    before, after = shakespeare_score(base), shakespeare_score(tuned)
    print(f"share of common Shakespeare words: base {before:.3f}, fine-tuned {after:.3f}")
    assert after > before, "fine-tuning did not move generations towards the dataset"


def test_training_lowered_the_loss_on_the_dataset(demo: Demo) -> None:
    logs = demo.sub("logs", "model", "tiny-gpt-shakespeare")
    m = re.search(r'"loss_before":\s*([\d.]+).*?"loss_after":\s*([\d.]+)', logs, re.S)
    assert m, "metrics.json with loss_before/loss_after not found in `sub logs`"
    before, after = float(m.group(1)), float(m.group(2))
    print(f"loss on the dataset: {before:.3f} -> {after:.3f}")
    assert after < before
    params = demo.sub("get", "model", "tiny-gpt-shakespeare", "-o", "json")
    assert json.loads(params)["spec"]["training"]["params"]["dataLimit"] == 1500


def test_openai_sdk_completions_and_streaming(demo: Demo) -> None:
    url = demo.status("server", "tiny-gpt-shakespeare")["url"]
    client = OpenAI(base_url=f"{url}/v1", api_key="not-needed")
    models = client.models.list()
    assert len(models.data) >= 1
    done = client.completions.create(model=models.data[0].id, prompt=PROMPT, max_tokens=16)
    assert done.choices[0].text and done.usage is not None and done.usage.completion_tokens > 0
    chunks = list(client.completions.create(model=models.data[0].id, prompt=PROMPT, max_tokens=16, stream=True))
    assert len(chunks) >= 2
    assert "".join(c.choices[0].text for c in chunks if c.choices)


def test_bad_bodies_get_422_not_500(demo: Demo) -> None:
    url = demo.status("server", "tiny-gpt-shakespeare")["url"]
    for body in ({}, {"prompt": 3}, {"prompt": "x", "max_new_tokens": -1}, {"prompt": "x", "max_new_tokens": 10**9}):
        assert httpx.post(f"{url}/generate", json=body, timeout=30).status_code == 422, body
    resp = httpx.post(f"{url}/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 422


def test_docs_are_served_without_a_cdn(demo: Demo) -> None:
    url = demo.status("server", "tiny-gpt-shakespeare")["url"]
    html = httpx.get(f"{url}/docs", timeout=30).text
    external = re.findall(r'(?:src|href)="(https?://[^"]+)"', html)
    assert external == [], f"/docs loads assets from the network: {external}"
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', html):
        assert httpx.get(f"{url}{asset}", timeout=30).status_code == 200, asset
    spec = httpx.get(f"{url}/openapi.json", timeout=30).json()
    assert {"/generate", "/v1/completions", "/v1/models"} <= set(spec["paths"])


def test_schemathesis_finds_no_server_errors(demo: Demo) -> None:
    url = demo.status("server", "tiny-gpt-shakespeare")["url"]
    st = str(Path(sys.executable).with_name("schemathesis"))
    proc = subprocess.run([st, "run", f"{url}/openapi.json", "--checks", "not_a_server_error",
                           "--max-examples", "15", "--request-timeout", "60", "--phases", "examples,fuzzing"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_notebook_api_needs_the_token(demo: Demo) -> None:
    url = demo.status("notebook", "tiny-gpt-shakespeare")["url"]
    base, token = url.split("/?token=")
    assert httpx.get(f"{base}/api/status", params={"token": token}, timeout=30).status_code == 200
    assert httpx.get(f"{base}/api/status", timeout=30).status_code == 403


def test_second_run_is_fast_because_nothing_changed(demo: Demo) -> None:
    started = time.monotonic()
    out = demo.sub("apply", "-f", str(REPO / "examples" / "demo"))
    took = time.monotonic() - started
    print(f"re-apply of the unchanged demo took {took:.2f}s")
    lines = out.strip().splitlines()
    demo_objects = sum(f.read_text().count("\nkind: ") + f.read_text().startswith("kind: ")
                       for f in (REPO / "examples" / "demo").glob("*.yaml"))
    assert demo_objects >= 6 and len(lines) == demo_objects, out
    assert all(line.endswith(" unchanged") for line in lines), out
