"""The shapes of a fine-tuning example, and how each becomes tokens with a loss mask.

Three JSONL shapes are accepted, one object per line (the last two are what the
OpenAI fine-tuning API takes, and what this project's OpenAI-compatible
fine-tuning endpoint feeds the trainer):

- ``{"text": "..."}``: every token is learned (language-model training);
- ``{"messages": [{"role": ..., "content": ...}, ...]}``: a conversation rendered
  with the tokenizer's chat template (or :data:`substratus_ml.chat.TRANSCRIPT_TEMPLATE`
  when it has none, the same default the server prompts such a model with);
  only the assistant turns are learned (an assistant message with ``"weight": 0``
  is not);
- ``{"prompt": "...", "completion": "..."}``: the text is prompt + completion as
  given (no separator is added); only the completion is learned.

An example becomes :class:`Segment` s (text, learned or not). :mod:`corpus`
parses the files; :func:`encode` turns an example into token ids and a mask
that :func:`substratus_ml.corpus.labelled_blocks` makes into labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from substratus_ml.chat import TRANSCRIPT_TEMPLATE

ROLES = ("system", "developer", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    learned: bool = True  # assistant messages only: OpenAI's "weight" (0 or 1)


@dataclass(frozen=True)
class Chat:
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class PromptCompletion:
    prompt: str
    completion: str


Example = str | Chat | PromptCompletion


@dataclass(frozen=True)
class Segment:
    text: str
    learned: bool


class ShapeError(ValueError):
    """A JSON object is none of the accepted shapes; the message names the field."""


def parse(obj: Any) -> Example | None:
    """The example in one decoded JSONL line; ``None`` for an empty text record."""
    if not isinstance(obj, dict):
        raise ShapeError(_EXPECTED)
    if "messages" in obj:
        return _chat(obj["messages"])
    if "prompt" in obj or "completion" in obj:
        return _prompt_completion(obj)
    if isinstance(obj.get("text"), str):
        return obj["text"] if obj["text"].strip() else None
    raise ShapeError(_EXPECTED)


_EXPECTED = ('expected an object with a string "text" field, a "messages" list '
             '(chat) or "prompt" and "completion" strings')


def _prompt_completion(obj: dict[str, Any]) -> PromptCompletion:
    for key in ("prompt", "completion"):
        if not isinstance(obj.get(key), str):
            raise ShapeError(f'"{key}" must be a string (prompt/completion example)')
    if not obj["completion"].strip():
        raise ShapeError('"completion" is empty: there is nothing to learn')
    return PromptCompletion(obj["prompt"], obj["completion"])


def _chat(messages: Any) -> Chat:
    if not isinstance(messages, list) or not messages:
        raise ShapeError('"messages" must be a non-empty list of {"role", "content"} objects')
    parsed = tuple(_message(i, m) for i, m in enumerate(messages))
    if not any(m.role == "assistant" and m.learned for m in parsed):
        raise ShapeError('"messages" has no assistant message to learn (with weight 1)')
    return Chat(parsed)


def _message(index: int, obj: Any) -> Message:
    where = f"messages[{index}]"
    if not isinstance(obj, dict):
        raise ShapeError(f'{where}: must be an object with "role" and "content"')
    if obj.get("role") not in ROLES:
        raise ShapeError(f'{where}.role: must be one of {", ".join(ROLES)}, not {obj.get("role")!r}')
    content = _content(where, obj.get("content"))
    weight = obj.get("weight", 1)
    if weight not in (0, 1) or isinstance(weight, bool):
        raise ShapeError(f"{where}.weight: must be 0 or 1")
    if weight == 0 and obj["role"] != "assistant":
        raise ShapeError(f"{where}.weight: only assistant messages take a weight")
    return Message(obj["role"], content, learned=weight == 1)


def _content(where: str, content: Any) -> str:
    """A string, or a list of ``{"type": "text", "text": ...}`` parts (joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in content):
        return "".join(p["text"] for p in content)
    raise ShapeError(f'{where}.content: must be a string or a list of {{"type": "text", '
                     '"text": ...}} parts')


Render = Callable[[Sequence[Message], bool], str]
"""Messages and add_generation_prompt -> text (a tokenizer's chat template)."""


def template_renderer(tokenizer: Any) -> Render:
    """The tokenizer's chat template, or the transcript template the server also falls back to."""
    template = None if getattr(tokenizer, "chat_template", None) else TRANSCRIPT_TEMPLATE

    def render(messages: Sequence[Message], add_generation_prompt: bool) -> str:
        plain = [{"role": m.role, "content": m.content} for m in messages]
        return str(tokenizer.apply_chat_template(plain, chat_template=template, tokenize=False,
                                                 add_generation_prompt=add_generation_prompt))
    return render


def chat_segments(chat: Chat, render: Render) -> list[Segment]:
    """The conversation as text, split where assistant turns begin and end.

    Each assistant turn is the difference between the conversation rendered up
    to it with a generation prompt and rendered through it. A template that does
    not render a conversation as a growing prefix (some rewrite earlier turns)
    cannot be split this way: then the whole text is learned, and the caller
    counts such examples (:attr:`Encoded.split`).
    """
    segments: list[Segment] = []
    done = ""
    for index, message in enumerate(chat.messages):
        if message.role != "assistant":
            continue
        before = _render_prefix(render, chat.messages[:index])
        through = render(chat.messages[: index + 1], False)
        if not (before.startswith(done) and through.startswith(before)):
            return [Segment(render(chat.messages, False), True)]
        segments += [Segment(before[len(done):], False), Segment(through[len(before):], message.learned)]
        done = through
    whole = render(chat.messages, False)
    if not whole.startswith(done):
        return [Segment(whole, True)]
    if whole[len(done):]:
        segments.append(Segment(whole[len(done):], False))
    return [s for s in segments if s.text] or [Segment(whole, True)]


def _render_prefix(render: Render, messages: Sequence[Message]) -> str:
    """The text before an assistant turn; some templates cannot render an empty conversation."""
    if messages:
        return render(messages, True)
    try:
        return render(messages, True)
    except Exception:  # jinja2 errors on messages[0] of an empty list
        return ""


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    learned: list[bool]
    split: bool = True  # False: a chat whose template could not be split into turns


def encode(example: Example, tokenizer: Any, render: Render) -> Encoded:
    """Token ids of ``example`` and, per token, whether its loss is learned."""
    if isinstance(example, str):
        tokens = list(tokenizer.encode(example))
        return Encoded(tokens, [True] * len(tokens))
    if isinstance(example, PromptCompletion):
        prompt = list(tokenizer.encode(example.prompt))
        completion = list(tokenizer.encode(example.completion, add_special_tokens=False))
        return Encoded(prompt + completion, [False] * len(prompt) + [True] * len(completion))
    segments = chat_segments(example, render)
    ids: list[int] = []
    learned: list[bool] = []
    for segment in segments:
        piece = list(tokenizer.encode(segment.text, add_special_tokens=False))
        ids += piece
        learned += [segment.learned] * len(piece)
    split = not (len(segments) == 1 and segments[0].learned)
    return Encoded(ids, learned, split)
