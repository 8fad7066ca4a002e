"""Pick the next token for every row of a batch at once.

Rows with temperature 0 take the arg-max (deterministic: the same prompt gives
the same text whether it was batched or not); rows with temperature > 0 are
sampled from the temperature-scaled distribution cut to its top-p nucleus.
"""

from __future__ import annotations

import torch

MIN_TEMPERATURE = 1e-4


def next_tokens(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``logits`` ``[B, V]``, ``temperature``/``top_p`` ``[B]`` -> token ids ``[B]``."""
    chosen = logits.argmax(dim=-1)
    # Temperatures too small to divide by safely (schemathesis sent 1.2e-38) decode greedily.
    sampled = temperature > MIN_TEMPERATURE
    if not bool(sampled.any()):
        return chosen
    scaled = logits[sampled].float() / temperature[sampled].unsqueeze(1)
    probs = torch.softmax(scaled, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # Drop a token when the tokens ranked above it already cover top_p (the first always stays).
    before = sorted_probs.cumsum(dim=-1) - sorted_probs
    drop = before >= top_p[sampled].unsqueeze(1)
    drop[:, 0] = False  # rounding can make `before` of the top token > a tiny top_p: never drop it
    sorted_probs[drop] = 0.0
    pick = torch.multinomial(sorted_probs, 1, generator=generator)
    chosen[sampled] = order.gather(1, pick).squeeze(1)
    return chosen
