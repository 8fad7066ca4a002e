"""The continuous-batching engine: batched greedy equals alone, joining, leaving, limits."""

from __future__ import annotations

import functools
import threading
import time

import pytest
import torch

from substratus_ml.detok import IncrementalDetokenizer
from substratus_ml.engine import (BatchEngine, DoneEvent, EngineConfig, Event, QueueFull,
                                  SamplingParams, TextEvent)
from substratus_ml.loading import LoadedModel

PROMPTS = ["The quick brown fox", "A", "Time flies like an arrow; fruit", "Never put off until",
           "The early bird catches the worm, but the second", "All that", "x y z", ""]


class Collector:
    def __init__(self) -> None:
        self.text = ""
        self.done: DoneEvent | None = None
        self.finished = threading.Event()
        self.started = threading.Event()

    def __call__(self, event: Event) -> None:
        if isinstance(event, TextEvent):
            self.text += event.text
            self.started.set()
        else:
            self.done = event
            self.finished.set()


def engine(model: LoadedModel, **config: object) -> BatchEngine:
    return BatchEngine(model, EngineConfig(**config))  # type: ignore[arg-type]


def ids(model: LoadedModel, prompt: str) -> list[int]:
    return list(model.tokenizer.encode(prompt))


def _run_all(eng: BatchEngine, jobs: list[tuple[str, SamplingParams]]) -> list[Collector]:
    """Submit every job before the worker starts, so the engine takes them together."""
    collectors = [Collector() for _ in jobs]
    for (prompt, params), collector in zip(jobs, collectors):
        eng.submit(ids(eng.loaded, prompt), params, collector)
    eng.start()
    try:
        for collector in collectors:
            assert collector.finished.wait(60), "generation did not finish"
    finally:
        eng.close()
    return collectors


def test_batched_greedy_equals_unbatched_greedy(tiny_model: LoadedModel) -> None:
    jobs = [(p, SamplingParams(max_new_tokens=12 + i)) for i, p in enumerate(PROMPTS)]
    batched_engine = engine(tiny_model, max_batch=16)
    batched = _run_all(batched_engine, jobs)
    serial_engine = engine(tiny_model, max_batch=1)
    serial = _run_all(serial_engine, jobs)
    assert batched_engine.stats.largest_batch == len(PROMPTS)
    assert batched_engine.stats.prefills == 1
    assert serial_engine.stats.largest_batch == 1 and serial_engine.stats.prefills == len(PROMPTS)
    assert [c.text for c in batched] == [c.text for c in serial]
    assert [c.done for c in batched] == [c.done for c in serial]
    assert any(c.text for c in batched)


def test_a_late_request_joins_the_running_batch_and_leaves_first(tiny_model: LoadedModel) -> None:
    eng = engine(tiny_model, max_batch=4)
    long_run, late = Collector(), Collector()
    eng.start()
    try:
        eng.submit(ids(tiny_model, "The quick"), SamplingParams(100, ignore_eos=True), long_run)
        assert long_run.started.wait(30)
        eng.submit(ids(tiny_model, "Never put off"), SamplingParams(5, ignore_eos=True), late)
        assert late.finished.wait(30)
        assert not long_run.finished.is_set(), "the late request waited for the first to finish"
        assert long_run.finished.wait(60)
    finally:
        eng.close()
    assert eng.stats.prefills == 2 and eng.stats.largest_batch == 2
    [alone] = _run_all(engine(tiny_model, max_batch=1),
                       [("Never put off", SamplingParams(5, ignore_eos=True))])
    assert late.text == alone.text
    assert long_run.done is not None and long_run.done.completion_tokens == 100


def test_each_request_stops_at_its_own_limit(tiny_model: LoadedModel) -> None:
    jobs = [("The quick", SamplingParams(max_new_tokens=n)) for n in (1, 5, 20)]
    results = _run_all(engine(tiny_model, max_batch=4), jobs)
    for (_, params), result in zip(jobs, results):
        assert result.done is not None
        assert result.done.completion_tokens <= params.max_new_tokens
        if result.done.finish_reason == "length":
            assert result.done.completion_tokens == params.max_new_tokens


def test_more_requests_than_slots_all_finish_and_match_alone(tiny_model: LoadedModel) -> None:
    jobs = [(p, SamplingParams(8 + 3 * i, ignore_eos=True)) for i, p in enumerate(PROMPTS)]
    few_slots = engine(tiny_model, max_batch=3)
    results = _run_all(few_slots, jobs)
    alone = _run_all(engine(tiny_model, max_batch=1), jobs)
    assert few_slots.stats.largest_batch == 3 and few_slots.stats.prefills > 1
    assert [r.text for r in results] == [a.text for a in alone]


def test_sampling_with_temperature_runs_beside_greedy(tiny_model: LoadedModel) -> None:
    jobs = [("The", SamplingParams(10, temperature=1.0, top_p=0.9)), ("The", SamplingParams(10))]
    results = _run_all(engine(tiny_model, max_batch=4, seed=1), jobs)
    assert all(r.done is not None and r.done.error is None for r in results)
    [greedy] = _run_all(engine(tiny_model), [("The", SamplingParams(10))])
    assert results[1].text == greedy.text  # the sampled neighbour does not disturb greedy rows


def test_over_long_prompt_is_cut_to_fit_the_context(tiny_model: LoadedModel) -> None:
    prompt = "The quick brown fox jumps over the lazy dog. " * 40  # far over 128 positions
    [result] = _run_all(engine(tiny_model), [(prompt, SamplingParams(50))])
    assert result.done is not None and result.done.error is None
    assert result.done.prompt_tokens + result.done.completion_tokens <= tiny_model.context_length


def test_ignore_eos_always_produces_max_new_tokens(tiny_model: LoadedModel) -> None:
    jobs = [(p, SamplingParams(max_new_tokens=30, ignore_eos=True)) for p in PROMPTS[:3]]
    for result in _run_all(engine(tiny_model), jobs):
        assert result.done is not None
        assert (result.done.finish_reason, result.done.completion_tokens) == ("length", 30)


def test_a_stop_token_ends_the_request(tiny_model: LoadedModel) -> None:
    [free] = _run_all(engine(tiny_model), [("The quick", SamplingParams(20, ignore_eos=True))])
    first = ids(tiny_model, free.text)[0]
    [stopped] = _run_all(engine(tiny_model), [("The quick", SamplingParams(20, stop_token_ids=(first,)))])
    assert stopped.done is not None and stopped.done.finish_reason == "stop"
    assert stopped.done.completion_tokens == 0


def test_cancel_frees_the_slot(tiny_model: LoadedModel) -> None:
    eng = engine(tiny_model, max_batch=1)
    endless, after = Collector(), Collector()
    eng.start()
    try:
        handle = eng.submit(ids(tiny_model, "The"), SamplingParams(120, ignore_eos=True), endless)
        assert endless.started.wait(30)
        eng.submit(ids(tiny_model, "A"), SamplingParams(3), after)
        handle.cancel()
        assert endless.finished.wait(30) and after.finished.wait(30)
    finally:
        eng.close()
    assert endless.done is not None and endless.done.finish_reason == "cancelled"
    assert endless.done.completion_tokens < 120
    assert after.done is not None and after.done.error is None


def test_a_passed_deadline_stops_running_and_waiting_requests(tiny_model: LoadedModel) -> None:
    eng = engine(tiny_model, max_batch=1)
    running, queued = Collector(), Collector()
    soon = time.monotonic() + 0.3
    eng.submit(ids(tiny_model, "The"), SamplingParams(125, ignore_eos=True), running, deadline=soon)
    eng.submit(ids(tiny_model, "A"), SamplingParams(5), queued, deadline=soon)
    slow_forward = eng.loaded.model.forward

    @functools.wraps(slow_forward)
    def slowly(*args: object, **kwargs: object) -> object:
        time.sleep(0.02)  # make sure 125 tokens cannot finish before the deadline
        return slow_forward(*args, **kwargs)

    eng.loaded.model.forward = slowly  # type: ignore[method-assign]
    try:
        eng.start()
        assert running.finished.wait(30) and queued.finished.wait(30)
    finally:
        eng.close()
        del eng.loaded.model.forward
    assert running.done is not None and running.done.finish_reason == "timeout"
    assert queued.done is not None and queued.done.finish_reason == "timeout"


def test_a_full_queue_refuses_more(tiny_model: LoadedModel) -> None:
    eng = engine(tiny_model, max_queue=2)  # not started: nothing leaves the queue
    for _ in range(2):
        eng.submit([1, 2], SamplingParams(2), Collector())
    with pytest.raises(QueueFull, match="limit 2"):
        eng.submit([1, 2], SamplingParams(2), Collector())


def test_a_model_failure_fails_the_batch_and_the_engine_goes_on(tiny_model: LoadedModel) -> None:
    eng = engine(tiny_model)
    broken, fine = Collector(), Collector()
    real_forward = eng.loaded.model.forward
    calls = {"n": 0}

    @functools.wraps(real_forward)
    def fail_once(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return real_forward(*args, **kwargs)

    eng.loaded.model.forward = fail_once  # type: ignore[method-assign]
    try:
        eng.submit(ids(tiny_model, "The"), SamplingParams(5), broken)
        eng.start()
        assert broken.finished.wait(30)
        eng.submit(ids(tiny_model, "The"), SamplingParams(5), fine)
        assert fine.finished.wait(30)
    finally:
        eng.close()
        del eng.loaded.model.forward
    assert broken.done is not None and broken.done.error == "RuntimeError: boom"
    assert fine.done is not None and fine.done.error is None


def test_incremental_detokenization_equals_a_full_decode(tiny_model: LoadedModel) -> None:
    tok = tiny_model.tokenizer
    text = "unicode: café ☕ naïve — “quoted” 日本語 and the quick brown fox"
    prompt, generated = ids(tiny_model, "Say:"), ids(tiny_model, text)
    detok = IncrementalDetokenizer(tok, prompt)
    pieces = [detok.add(t) for t in generated] + [detok.add(None, final=True)]
    assert "".join(pieces) == tok.decode(generated, skip_special_tokens=True)
    assert len([p for p in pieces if p]) > 5  # it streamed, not all at the end


def test_tiny_top_p_keeps_the_most_likely_token() -> None:
    """schemathesis found top_p=5e-324 crashing multinomial: the top token must always stay."""
    from substratus_ml.sampling import next_tokens

    logits = torch.randn(3, 50) * 30
    out = next_tokens(logits, torch.tensor([1.0, 1.0, 0.7]), torch.tensor([5e-324, 1e-12, 1e-300]))
    assert out.tolist() == logits.argmax(dim=-1).tolist()


def test_denormal_temperature_decodes_greedily() -> None:
    from substratus_ml.sampling import next_tokens

    logits = torch.randn(2, 50) * 30
    out = next_tokens(logits, torch.tensor([1.1754943508222875e-38, 1e-30]), torch.tensor([1.0, 1e-77]))
    assert out.tolist() == logits.argmax(dim=-1).tolist()


def test_repetition_penalty_matches_transformers_generate(tiny_model: LoadedModel) -> None:
    prompt = "The quick brown fox"
    params = SamplingParams(20, repetition_penalty=1.5)
    penalised, plain = _run_all(engine(tiny_model), [(prompt, params), (prompt, SamplingParams(20, ignore_eos=True))])
    ids_in = torch.tensor([ids(tiny_model, prompt)])
    with torch.inference_mode():
        reference = tiny_model.model.generate(ids_in, do_sample=False, max_new_tokens=20,
                                              repetition_penalty=1.5, pad_token_id=0)
    expected = tiny_model.tokenizer.decode(reference[0, ids_in.shape[1]:], skip_special_tokens=True)
    assert penalised.text == expected
    [alone] = _run_all(engine(tiny_model), [(prompt, SamplingParams(20, ignore_eos=True))])
    assert plain.text == alone.text != penalised.text  # the neighbour's penalty does not leak


def test_frequency_and_presence_penalties_follow_openai(tiny_model: LoadedModel) -> None:
    prompt = ids(tiny_model, "Time flies")
    [result] = _run_all(engine(tiny_model), [("Time flies", SamplingParams(
        15, ignore_eos=True, frequency_penalty=0.8, presence_penalty=0.5))])
    out: list[int] = []
    with torch.inference_mode():
        for _ in range(15):  # the definition, step by step, without a cache
            logits = tiny_model.model(torch.tensor([prompt + out])).logits[0, -1].float()
            for token in set(out):
                logits[token] -= 0.8 * out.count(token) + 0.5
            out.append(int(logits.argmax()))
    assert result.text == tiny_model.tokenizer.decode(out, skip_special_tokens=True)


def test_a_non_streaming_request_gets_its_text_in_one_piece(tiny_model: LoadedModel) -> None:
    eng = engine(tiny_model)
    streamed, whole = Collector(), Collector()
    pieces: list[str] = []

    def count(event: Event) -> None:
        if isinstance(event, TextEvent):
            pieces.append(event.text)
        whole(event)

    params = SamplingParams(30, ignore_eos=True)
    eng.submit(ids(tiny_model, "unicode: café ☕"), params, streamed)
    eng.submit(ids(tiny_model, "unicode: café ☕"), params, count, stream=False)
    eng.start()
    try:
        assert streamed.finished.wait(30) and whole.finished.wait(30)
    finally:
        eng.close()
    assert len(pieces) == 1 and whole.text == streamed.text != ""
