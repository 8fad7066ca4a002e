"""Repetition, frequency and presence penalties, per cache slot, on the device.

Small models decoding greedily fall into loops ("the the the"); the usual cure
is to penalise tokens already seen. Three kinds, as vLLM offers them:

- ``repetition_penalty`` (``transformers``' definition): the logit of every token
  in the prompt or the output so far is divided by the penalty when positive,
  multiplied when negative;
- ``frequency_penalty`` and ``presence_penalty`` (OpenAI's): subtract
  ``frequency * count + presence * (count > 0)``, counting output tokens only.

The state (``[slots, vocab]`` counts and seen-flags) is allocated the first time
a request asks for a penalty; rows that ask for none have neutral parameters,
which leave their logits bit-for-bit unchanged.
"""

from __future__ import annotations

import torch


class Penalties:
    def __init__(self, slots: int, vocab: int, device: torch.device) -> None:
        self.counts = torch.zeros(slots, vocab, dtype=torch.float32, device=device)
        self.seen = torch.zeros(slots, vocab, dtype=torch.bool, device=device)
        self.repetition = torch.ones(slots, dtype=torch.float32, device=device)
        self.frequency = torch.zeros(slots, dtype=torch.float32, device=device)
        self.presence = torch.zeros(slots, dtype=torch.float32, device=device)

    def start(self, slot: int, prompt: list[int], repetition: float, frequency: float,
              presence: float) -> None:
        """A new request in ``slot``: forget the old one, remember ``prompt``'s tokens."""
        self.counts[slot] = 0
        self.seen[slot] = False
        self.seen[slot, torch.tensor(prompt, device=self.seen.device)] = True
        self.repetition[slot], self.frequency[slot], self.presence[slot] = repetition, frequency, presence

    def apply(self, logits: torch.Tensor, rows: slice) -> torch.Tensor:
        scores = logits.float()
        repetition = self.repetition[rows].unsqueeze(1)
        penalised = torch.where(scores > 0, scores / repetition, scores * repetition)
        scores = torch.where(self.seen[rows], penalised, scores)
        counts = self.counts[rows]
        return (scores - self.frequency[rows].unsqueeze(1) * counts
                - self.presence[rows].unsqueeze(1) * (counts > 0).float())

    def record(self, rows: slice, tokens: torch.Tensor) -> None:
        index = torch.arange(rows.start, rows.stop, device=tokens.device)
        self.counts[index, tokens] += 1
        self.seen[index, tokens] = True

    def move(self, source: int, target: int) -> None:
        for state in (self.counts, self.seen, self.repetition, self.frequency, self.presence):
            state[target] = state[source]
