"""CPU and memory quantities, written as in Kubernetes (`500m`, `2`, `512Mi`, `4Gi`).

`spec.resources.limits` on a Dataset, Model, ModelServer or Notebook becomes
`--cpus` / `--memory` on the containers it runs; `requests` are checked
(never above the limit) so the same manifest stays valid on Kubernetes, but
one machine has nothing to schedule with them. Pure functions: the schema
validates with them, the planners turn a spec into `RunLimits`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Optional, Union

QUANTITY = re.compile(r"^(?P<num>[+]?(?:\d+(?:\.\d*)?|\.\d+))(?P<suffix>[eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$")
BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": Decimal(10**3),
           "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15),
           "E": Decimal(10**18)}
MIN_CPU = Decimal("0.01")          # the engines refuse less
MIN_MEMORY = 6 * 2**20             # podman and docker refuse less than 6 MiB
MAX_CPU = Decimal(4096)
MAX_MEMORY = 2**60
Quantity = Union[str, int, float]


@dataclass(frozen=True)
class RunLimits:
    """What the engine enforces on one container: CPUs (fractional) and memory in bytes."""

    cpus: Optional[float] = None
    memory: Optional[int] = None


def parse_quantity(value: Quantity) -> Decimal:
    """A Kubernetes quantity as a number; ValueError naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("must be a quantity such as '500m', '2', '512Mi' or '4Gi', not true/false")
    text = repr(value) if isinstance(value, float) else str(value)
    m = QUANTITY.match(text.strip())
    if m is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity: write e.g. '500m' or '2' for CPU, "
                         "'512Mi' or '4Gi' for memory")
    try:
        number = Decimal(m.group("num"))
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise ValueError(f"{value!r} is not a number") from None
    suffix = m.group("suffix") or ""
    if suffix in BINARY:
        return number * BINARY[suffix]
    if suffix in DECIMAL:
        return number * DECIMAL[suffix]
    if suffix:
        exponent = int(suffix[1:])
        if abs(exponent) > 30:
            raise ValueError(f"{value!r}: exponent out of range")
        return number * Decimal(10) ** exponent
    return number


def cpu_cores(value: Quantity) -> Decimal:
    cores = parse_quantity(value)
    if cores < MIN_CPU or cores > MAX_CPU:
        raise ValueError(f"{value!r} is out of range: CPU must be between 10m (0.01) and {MAX_CPU} cores")
    return cores


def memory_bytes(value: Quantity) -> int:
    size = parse_quantity(value)
    if size < MIN_MEMORY or size > MAX_MEMORY:
        raise ValueError(f"{value!r} is out of range: memory must be at least 6Mi (the engines refuse less)")
    if size != size.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of bytes: write e.g. '512Mi'")
    return int(size)


def run_limits(cpu: Optional[Quantity], memory: Optional[Quantity]) -> RunLimits:
    return RunLimits(cpus=float(cpu_cores(cpu)) if cpu is not None else None,
                     memory=memory_bytes(memory) if memory is not None else None)
