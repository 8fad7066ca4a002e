"""Turn a chat conversation into the prompt text the served model expects.

A model that ships a chat template (Gemma 3's tokenizer does) is prompted with
that template, as ``transformers`` and vLLM do. A base model without one gets
:data:`TRANSCRIPT_TEMPLATE`, a plain transcript ("User: ...", "Assistant:"),
which a model pre-trained on prose can at least continue sensibly. Generation
stops at the model's end-of-sequence tokens plus the end-of-turn token of the
common template families, so a chat answer ends where its turn ends.
"""

from __future__ import annotations

from typing import Any

TRANSCRIPT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] }}\n\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)

END_OF_TURN_TOKENS = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>")


class ChatTemplateError(ValueError):
    """The model's chat template refused the conversation (e.g. roles out of order)."""


class ChatFormat:
    """How one tokenizer renders conversations, worked out once when the model loads."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.own_template = bool(getattr(tokenizer, "chat_template", None))
        vocab = tokenizer.get_vocab()
        self.stop_ids = tuple(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)

    def render(self, messages: list[dict[str, str]]) -> str:
        """Prompt text for ``messages``, ending where the assistant's answer begins."""
        template = None if self.own_template else TRANSCRIPT_TEMPLATE
        try:
            text = self.tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                      add_generation_prompt=True)
        except Exception as exc:  # jinja2's TemplateError, raise_exception() in templates
            raise ChatTemplateError(f"the model's chat template refused the messages: {exc}") from exc
        return str(text)
