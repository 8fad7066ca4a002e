"""Incremental detokenization: new text per token without re-decoding the whole completion.

Decoding ``generated[:n]`` every step costs O(n) per token, O(n^2) per request.
Like vLLM and TGI, this decodes only a short window: the tokens since the last
emitted text (``read_offset``) plus a few before them (``prefix_offset``) so
that tokenizers which render a token differently at the start of a string
(SentencePiece's leading space, byte-level pieces of one character) see the
same context as a full decode would. The window starts inside the prompt for
the same reason. Text is held back while it ends in an incomplete UTF-8
character (U+FFFD) and flushed when the request finishes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CONTEXT_TOKENS = 5


def decoder(tokenizer: Any) -> Callable[[list[int]], str]:
    """``ids -> text`` without special tokens. A fast tokenizer's Rust ``decode`` is called
    directly: it is what ``tokenizer.decode`` ends in, minus several microseconds of
    Python per call, which add up at one call per token per running request."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return lambda ids: str(backend.decode(ids, skip_special_tokens=True))
    return lambda ids: str(tokenizer.decode(ids, skip_special_tokens=True,
                                            clean_up_tokenization_spaces=False))


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any, prompt_ids: list[int],
                 decode: Callable[[list[int]], str] | None = None) -> None:
        self._decode = decode or decoder(tokenizer)
        self._ids = list(prompt_ids[-CONTEXT_TOKENS:])
        self._prefix_offset = 0
        self._read_offset = len(self._ids)

    def push(self, token: int | None) -> str:
        """Record ``token`` without decoding; a later ``add(None, final=True)`` returns
        all the text since the last one."""
        if token is not None:
            self._ids.append(token)
        return ""

    def add(self, token: int | None, final: bool = False) -> str:
        """Record ``token`` (None: nothing new) and return the text it completes."""
        if token is not None:
            self._ids.append(token)
        if self._read_offset >= len(self._ids):
            return ""
        prefix = self._decode(self._ids[self._prefix_offset:self._read_offset])
        full = self._decode(self._ids[self._prefix_offset:])
        if full.endswith("\ufffd") and not final:
            return ""
        if not full.startswith(prefix):  # a tokenizer that rewrites earlier text: skip the overlap
            prefix = full[: len(prefix)]
        self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        return full[len(prefix):]
