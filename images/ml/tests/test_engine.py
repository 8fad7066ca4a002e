"""The batching engine: batched greedy decoding equals unbatched, limits per request."""

from __future__ import annotations

import threading

from substratus_ml.engine import BatchEngine, DoneEvent, Event, SamplingParams, TextEvent
from substratus_ml.loading import LoadedModel

PROMPTS = ["The quick brown fox", "A", "Time flies like an arrow; fruit", "Never put off until",
           "The early bird catches the worm, but the second", "All that", "x y z", ""]


class Collector:
    def __init__(self) -> None:
        self.text = ""
        self.done: DoneEvent | None = None
        self.finished = threading.Event()

    def __call__(self, event: Event) -> None:
        if isinstance(event, TextEvent):
            self.text += event.text
        else:
            self.done = event
            self.finished.set()


def _run_all(engine: BatchEngine, jobs: list[tuple[str, SamplingParams]]) -> list[Collector]:
    """Submit every job before the worker starts, so a batching engine takes them together."""
    collectors = [Collector() for _ in jobs]
    for (prompt, params), collector in zip(jobs, collectors):
        engine.submit(prompt, params, collector)
    engine.start()
    try:
        for collector in collectors:
            assert collector.finished.wait(60), "generation did not finish"
    finally:
        engine.close()
    return collectors


def test_batched_greedy_equals_unbatched_greedy(tiny_model: LoadedModel) -> None:
    jobs = [(p, SamplingParams(max_new_tokens=12 + i)) for i, p in enumerate(PROMPTS)]
    batched_engine = BatchEngine(tiny_model, max_batch=16)
    batched = _run_all(batched_engine, jobs)
    serial_engine = BatchEngine(tiny_model, max_batch=1)
    serial = _run_all(serial_engine, jobs)
    assert batched_engine.stats.largest_batch == len(PROMPTS)
    assert serial_engine.stats.largest_batch == 1 and serial_engine.stats.batches == len(PROMPTS)
    assert [c.text for c in batched] == [c.text for c in serial]
    assert [c.done for c in batched] == [c.done for c in serial]
    assert any(c.text for c in batched)


def test_each_request_stops_at_its_own_limit(tiny_model: LoadedModel) -> None:
    jobs = [("The quick", SamplingParams(max_new_tokens=n)) for n in (1, 5, 20)]
    results = _run_all(BatchEngine(tiny_model, max_batch=4), jobs)
    for (_, params), result in zip(jobs, results):
        assert result.done is not None
        assert result.done.completion_tokens <= params.max_new_tokens
        if result.done.finish_reason == "length":
            assert result.done.completion_tokens == params.max_new_tokens


def test_sampling_with_temperature_runs_beside_greedy(tiny_model: LoadedModel) -> None:
    jobs = [("The", SamplingParams(10, temperature=1.0, top_p=0.9)), ("The", SamplingParams(10))]
    results = _run_all(BatchEngine(tiny_model, max_batch=4, seed=1), jobs)
    assert all(r.done is not None and r.done.error is None for r in results)


def test_over_long_prompt_is_cut_to_fit_the_context(tiny_model: LoadedModel) -> None:
    prompt = "The quick brown fox jumps over the lazy dog. " * 40  # far over 128 positions
    [result] = _run_all(BatchEngine(tiny_model), [(prompt, SamplingParams(50))])
    assert result.done is not None and result.done.error is None
    assert result.done.prompt_tokens + result.done.completion_tokens <= tiny_model.context_length


def test_ignore_eos_always_produces_max_new_tokens(tiny_model: LoadedModel) -> None:
    jobs = [(p, SamplingParams(max_new_tokens=30, ignore_eos=True)) for p in PROMPTS[:3]]
    for result in _run_all(BatchEngine(tiny_model), jobs):
        assert result.done is not None
        assert (result.done.finish_reason, result.done.completion_tokens) == ("length", 30)


def test_tiny_top_p_keeps_the_most_likely_token() -> None:
    """schemathesis found top_p=5e-324 crashing multinomial: the top token must always stay."""
    import torch

    from substratus_ml.sampling import next_tokens

    logits = torch.randn(3, 50) * 30
    out = next_tokens(logits, torch.tensor([1.0, 1.0, 0.7]), torch.tensor([5e-324, 1e-12, 1e-300]))
    assert out.tolist() == logits.argmax(dim=-1).tolist()


def test_denormal_temperature_decodes_greedily() -> None:
    import torch

    from substratus_ml.sampling import next_tokens

    logits = torch.randn(2, 50) * 30
    out = next_tokens(logits, torch.tensor([1.1754943508222875e-38, 1e-30]), torch.tensor([1.0, 1e-77]))
    assert out.tolist() == logits.argmax(dim=-1).tolist()
