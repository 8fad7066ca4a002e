"""Pick the next token for every row of a batch at once, on the model's device.

Rows with temperature 0 take the arg-max (deterministic: the same prompt gives
the same text whether it was batched or not); rows with temperature > 0 are
sampled from the temperature-scaled distribution cut to its top-p nucleus.
Everything stays on the device: only the chosen ids cross to the host, and the
caller (which knows every row's parameters) says whether any row samples, so
no step waits on the device just to find that out.
"""

from __future__ import annotations

import torch

MIN_TEMPERATURE = 1e-4


def is_greedy(temperature: float) -> bool:
    # Temperatures too small to divide by safely (schemathesis sent 1.2e-38) decode greedily.
    return temperature <= MIN_TEMPERATURE


def next_tokens(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                generator: torch.Generator | None = None, any_sampled: bool = True) -> torch.Tensor:
    """``logits`` ``[B, V]``, ``temperature``/``top_p`` ``[B]`` -> token ids ``[B]``."""
    chosen = logits.argmax(dim=-1)
    if not any_sampled:
        return chosen
    sampled = temperature > MIN_TEMPERATURE
    scaled = logits.float() / temperature.clamp(min=MIN_TEMPERATURE).unsqueeze(1)
    probs = torch.softmax(scaled, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # Drop a token when the tokens ranked above it already cover top_p (the first always stays).
    before = sorted_probs.cumsum(dim=-1) - sorted_probs
    drop = before >= top_p.unsqueeze(1)
    drop[:, 0] = False  # rounding can make `before` of the top token > a tiny top_p: never drop it
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    pick = torch.multinomial(sorted_probs, 1, generator=generator)
    return torch.where(sampled, order.gather(1, pick).squeeze(1), chosen)
