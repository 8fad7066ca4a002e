"""The control plane's own metrics, rendered in the Prometheus text format at `/metrics`.

Counters and a histogram kept in memory (they restart at zero with the
daemon, as Prometheus expects of a process); gauges that describe objects are
computed from the store when scraped. No client library: the format is small.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reconciles: Counter[tuple[str, str]] = Counter()        # (kind, result)
        self.failures: Counter[str] = Counter()                      # reason
        self._buckets: dict[str, list[int]] = {}                     # kind -> cumulative bucket counts
        self._sum: dict[str, float] = {}
        self._count: Counter[str] = Counter()

    def reconciled(self, kind: str, result: str, seconds: float) -> None:
        with self._lock:
            self.reconciles[(kind, result)] += 1
            buckets = self._buckets.setdefault(kind, [0] * len(BUCKETS))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            self._sum[kind] = self._sum.get(kind, 0.0) + seconds
            self._count[kind] += 1

    def outcomes(self, outcomes: Iterable[Any]) -> None:
        with self._lock:
            for o in outcomes:
                reason = getattr(o, "reason", None)
                if reason is not None:
                    self.failures[str(reason)] += 1

    def render(self, objects: dict[tuple[str, str], int], queue_depth: int, scheduled: int) -> str:
        """Prometheus text: `objects` is (kind, ready "true"/"false") -> count."""
        lines = ["# HELP substratus_objects Objects in the store by kind and readiness.",
                 "# TYPE substratus_objects gauge"]
        lines += [f'substratus_objects{{kind="{k}",ready="{r}"}} {n}' for (k, r), n in sorted(objects.items())]
        lines += ["# HELP substratus_queue_depth Object keys waiting for a reconcile pass now.",
                  "# TYPE substratus_queue_depth gauge", f"substratus_queue_depth {queue_depth}",
                  "# HELP substratus_queue_scheduled Object keys scheduled for a later pass.",
                  "# TYPE substratus_queue_scheduled gauge", f"substratus_queue_scheduled {scheduled}"]
        with self._lock:
            lines += ["# HELP substratus_reconciles_total Reconcile passes by kind and result.",
                      "# TYPE substratus_reconciles_total counter"]
            lines += [f'substratus_reconciles_total{{kind="{k}",result="{r}"}} {n}'
                      for (k, r), n in sorted(self.reconciles.items())]
            lines += ["# HELP substratus_action_failures_total Actions that failed, by the reason reported.",
                      "# TYPE substratus_action_failures_total counter"]
            lines += [f'substratus_action_failures_total{{reason="{r}"}} {n}' for r, n in sorted(self.failures.items())]
            lines += ["# HELP substratus_reconcile_duration_seconds Time one reconcile pass took.",
                      "# TYPE substratus_reconcile_duration_seconds histogram"]
            for kind in sorted(self._buckets):
                for bound, n in zip(BUCKETS, self._buckets[kind]):
                    lines.append(f'substratus_reconcile_duration_seconds_bucket{{kind="{kind}",le="{bound}"}} {n}')
                lines.append(f'substratus_reconcile_duration_seconds_bucket{{kind="{kind}",le="+Inf"}} '
                             f"{self._count[kind]}")
                lines.append(f'substratus_reconcile_duration_seconds_sum{{kind="{kind}"}} {self._sum[kind]:.6f}')
                lines.append(f'substratus_reconcile_duration_seconds_count{{kind="{kind}"}} {self._count[kind]}')
        return "\n".join(lines) + "\n"
