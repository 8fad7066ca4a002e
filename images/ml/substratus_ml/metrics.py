"""The model server's Prometheus metrics (``GET /metrics``, text exposition format).

Names follow vLLM's where they mean the same thing, with a ``substratus_``
prefix, so dashboards built for one read the other with a rename. The engine
reports through the :class:`~substratus_ml.engine.Observer` protocol; the HTTP
layer counts refusals (body too large, prompt too long, queue full,
unauthorized). Each app has its own registry, so tests can run several.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4,
                   0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    """Engine observer plus HTTP refusal counters, in one registry."""

    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r, label = self.registry, {"model_name": model_name}
        self.requests = Counter("substratus_requests", "Generation requests finished, by reason "
                                "(stop, length, cancelled, timeout, error).", ["model_name", "finish_reason"],
                                registry=r)
        self.rejected = Counter("substratus_requests_rejected", "Requests refused before generation, "
                                "by reason.", ["reason"], registry=r)
        self.prompt_tokens = Counter("substratus_prompt_tokens", "Prompt tokens of finished requests.",
                                     ["model_name"], registry=r).labels(**label)
        self.generation_tokens = Counter("substratus_generation_tokens", "Tokens generated.",
                                         ["model_name"], registry=r).labels(**label)
        self.ttft = Histogram("substratus_time_to_first_token_seconds", "Arrival to first token.",
                              ["model_name"], buckets=LATENCY_BUCKETS, registry=r).labels(**label)
        self.per_token = Histogram("substratus_time_per_output_token_seconds", "Time between two "
                                   "tokens of one request.", ["model_name"], buckets=LATENCY_BUCKETS,
                                   registry=r).labels(**label)
        self.e2e = Histogram("substratus_e2e_request_latency_seconds", "Arrival to last token.",
                             ["model_name"], buckets=REQUEST_BUCKETS, registry=r).labels(**label)
        self.waiting = Gauge("substratus_num_requests_waiting", "Requests queued for a batch slot.",
                             ["model_name"], registry=r).labels(**label)
        self.running = Gauge("substratus_num_requests_running", "Requests in the running batch.",
                             ["model_name"], registry=r).labels(**label)
        self._model = model_name

    # -- engine observer (called on the engine thread) ---------------------------------

    def scheduled(self, waiting: int, running: int) -> None:
        self.waiting.set(waiting)
        self.running.set(running)

    def token(self, first: bool, seconds: float) -> None:
        self.generation_tokens.inc()
        (self.ttft if first else self.per_token).observe(seconds)

    def finished(self, reason: str, prompt_tokens: int, completion_tokens: int,
                 seconds: float) -> None:
        self.requests.labels(self._model, reason).inc()
        self.prompt_tokens.inc(prompt_tokens)
        if completion_tokens:
            self.e2e.observe(seconds)

    # -- HTTP layer --------------------------------------------------------------------

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))
