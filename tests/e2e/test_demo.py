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
    link = re.search(r"Dashboard: (http://127\.0\.0\.1:\d+/ui/login#code=\S+)", out)
    assert link, out
    login_page = httpx.get(link.group(1).split("#")[0], timeout=30)
    assert login_page.status_code == 200 and "text/html" in login_page.headers["content-type"]


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


def test_openai_sdk_chat_and_streaming(demo: Demo) -> None:
    url = demo.status("server", "tiny-gpt-shakespeare")["url"]
    client = OpenAI(base_url=f"{url}/v1", api_key="not-needed")
    messages = [{"role": "user", "content": "Speak, Romeo."}]
    model = client.models.list().data[0].id  # the server answers only to the names it lists
    done = client.chat.completions.create(model=model, messages=messages,  # type: ignore[arg-type]
                                          max_tokens=16, temperature=0)
    assert done.choices[0].message.role == "assistant" and done.usage is not None
    chunks = list(client.chat.completions.create(model=model, messages=messages,  # type: ignore[arg-type]
                                                 max_tokens=16, temperature=0, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == done.choices[0].message.content


def test_metrics_count_what_was_served(demo: Demo) -> None:
    url = demo.status("server", "tiny-gpt-shakespeare")["url"]
    gen(url)
    text = httpx.get(f"{url}/metrics", timeout=30).text
    served = sum(float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith("substratus_requests_total{"))
    assert served >= 1
    for name in ("substratus_time_to_first_token_seconds_bucket", "substratus_num_requests_waiting",
                 "substratus_num_requests_running", "substratus_generation_tokens_total"):
        assert name in text, name


def test_the_demo_prints_words_not_noise(demo: Demo) -> None:
    """Each generation the demo printed has words, and not one word repeated over and over."""
    blocks = re.findall(r"((?:    \| .*\n?)+)", demo.output)
    assert len(blocks) == 4, demo.output
    for block in blocks:
        words = re.findall(r"[A-Za-z']+", block.replace("    | ", " "))
        print(" ".join(words))
        assert len(words) >= 6, block
        assert len(set(w.lower() for w in words)) >= 0.5 * len(words), block


def test_bad_bodies_get_422_not_500(demo: Demo) -> None:
    url = demo.status("server", "tiny-gpt-shakespeare")["url"]
    for body in ({}, {"prompt": 3}, {"prompt": "x", "max_new_tokens": -1}):
        assert httpx.post(f"{url}/generate", json=body, timeout=30).status_code == 422, body
    # More new tokens than the server's limit: 400 naming it, as vLLM answers.
    over = httpx.post(f"{url}/generate", json={"prompt": "x", "max_new_tokens": 10**9}, timeout=30)
    assert over.status_code == 400 and "SUBSTRATUS_MAX_NEW_TOKENS" in over.json()["detail"]
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


def test_the_shakespeare_loader_writes_progress_lines(tmp_path: Path) -> None:
    """load.py as load.sh runs it, on two small works: progress.jsonl, one line per work and one at the end."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "metadata.txt").write_text("[a_gut]\ntitle = A\n\n[b_gut]\ntitle = B\n")
    for name in ("a_gut", "b_gut"):
        (corpus / f"{name}.txt").write_text("Title\n\n" + "\n\n".join(f"Speech {i} of {name}." for i in range(50)))
    progress = tmp_path / "logs" / "progress.jsonl"
    loader = REPO / "examples" / "datasets" / "shakespeare" / "src" / "load.py"
    subprocess.run([sys.executable, str(loader), "--corpus", str(corpus), "--out", str(tmp_path / "out.jsonl"),
                    "--progress", str(progress)], check=True, capture_output=True)
    lines = [json.loads(line) for line in progress.read_text().splitlines()]
    assert [(line["step"], line["total_steps"]) for line in lines] == [(1, 3), (2, 3), (3, 3)]
    assert lines[-1]["records"] == len((tmp_path / "out.jsonl").read_text().splitlines())
    assert lines[-1]["bytes"] == (tmp_path / "out.jsonl").stat().st_size and lines[-1]["time"] > 1.7e9
