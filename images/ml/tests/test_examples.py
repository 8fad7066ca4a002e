"""Fine-tuning JSONL shapes (issue 23): chat and prompt/completion, validated line by line,
learned only where the answer is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from substratus_ml import corpus, examples
from substratus_ml.examples import Chat, Message, PromptCompletion
from trainrun import Dirs, train

GEMMA_LIKE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' "
    "else m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(tiny_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_dir, local_files_only=True)


def _learned_text(tokenizer: Any, encoded: examples.Encoded) -> str:
    return str(tokenizer.decode([i for i, keep in zip(encoded.ids, encoded.learned) if keep]))


def _chat(*turns: tuple[str, str]) -> Chat:
    return Chat(tuple(Message(role, content) for role, content in turns))


def test_the_three_shapes_are_read_with_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    lines = [{"text": "plain"}, {"prompt": "Q: 2+2?", "completion": " 4"},
             {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                           {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]}]}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    found = corpus.read_examples(path)
    assert [item.where for item in found] == [f"{path}:1", f"{path}:2", f"{path}:3"]
    assert found[0].example == "plain" and found[1].example == PromptCompletion("Q: 2+2?", " 4")
    assert found[2].example == _chat(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"))
    with pytest.raises(corpus.DataError, match="init-tiny reads text records only"):
        corpus.read_records(path)


@pytest.mark.parametrize("line, message", [
    ({"messages": []}, '"messages" must be a non-empty list'),
    ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant message to learn"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role: must be one of system, developer"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 5}]},
     "messages[1].content: must be a string"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 2}]},
     "messages[1].weight: must be 0 or 1"),
    ({"messages": ["hi"]}, 'messages[0]: must be an object with "role" and "content"'),
    ({"prompt": "only a prompt"}, '"completion" must be a string'),
    ({"prompt": 1, "completion": "x"}, '"prompt" must be a string'),
    ({"prompt": "p", "completion": "  "}, '"completion" is empty'),
    ({"input": "x"}, 'expected an object with a string "text" field, a "messages" list'),
])
def test_a_bad_line_is_named_with_its_number(tmp_path: Path, line: dict[str, Any], message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(corpus.DataError) as caught:
        corpus.read_examples(path)
    assert str(caught.value).startswith(f"{path}:2: ") and message in str(caught.value)


def test_prompt_completion_learns_the_completion_and_the_end(tokenizer: Any) -> None:
    render = examples.template_renderer(tokenizer)
    encoded = examples.encode(PromptCompletion("The cat sat on", " the mat."), tokenizer, render)
    assert _learned_text(tokenizer, encoded) == " the mat."
    assert tokenizer.decode(encoded.ids) == "The cat sat on the mat."
    ids, learned = corpus.encoded_stream([encoded], tokenizer.eos_token_id)
    assert ids[-1] == tokenizer.eos_token_id and learned[-1]  # the model learns to stop


def test_a_chat_without_a_template_uses_the_servers_transcript(tokenizer: Any) -> None:
    assert not tokenizer.chat_template
    chat = _chat(("user", "Hi there"), ("assistant", "Hello!"), ("user", "Bye"), ("assistant", "Farewell."))
    encoded = examples.encode(chat, tokenizer, examples.template_renderer(tokenizer))
    assert tokenizer.decode(encoded.ids) == ("User: Hi there\n\nAssistant: Hello!\n\n"
                                             "User: Bye\n\nAssistant: Farewell.\n\n")
    assert _learned_text(tokenizer, encoded) == " Hello!\n\n Farewell.\n\n"


def test_a_chat_template_of_the_model_is_split_into_turns(tokenizer: Any) -> None:
    tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path, local_files_only=True)
    tokenizer.chat_template = GEMMA_LIKE
    chat = Chat((Message("user", "Hi"), Message("assistant", "Hello", learned=False),
                 Message("user", "Name?"), Message("assistant", "Tiny.")))
    encoded = examples.encode(chat, tokenizer, examples.template_renderer(tokenizer))
    assert _learned_text(tokenizer, encoded) == "Tiny.<end_of_turn>\n"  # weight 0 turn not learned
    assert encoded.split


def test_a_template_that_rewrites_turns_is_learned_whole(tokenizer: Any) -> None:
    def render(messages: Any, add_generation_prompt: bool) -> str:
        # Like templates that drop earlier reasoning: the text is no growing prefix.
        return f"[{len(messages)}] " + " | ".join(m.content for m in messages)
    encoded = examples.encode(_chat(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")),
                              tokenizer, render)
    assert not encoded.split and all(encoded.learned)


def test_labels_ignore_what_is_not_learned() -> None:
    blocks = corpus.labelled_blocks([1, 2, 3, 4, 5, 6], [False, False, True, True, False, True], 3)
    assert blocks.ids.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert blocks.labels.tolist() == [[-100, -100, 3], [4, -100, 6]]
    plain = corpus.labelled_blocks([1, 2, 3, 4], [True] * 4, 2)
    assert plain.labels is plain.ids


def test_training_on_chats_and_completions(tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data.jsonl"
    rows = []
    for i in range(30):
        rows.append({"messages": [{"role": "user", "content": f"Where did animal {i % 3} sit?"},
                                  {"role": "assistant", "content": ["On the mat.", "On the log.", "On the wire."][i % 3]}]})
        rows.append({"prompt": f"Animal {i % 3} said", "completion": [" purr", " woof", " tweet"][i % 3]})
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    dirs = Dirs(tmp_path)
    assert train(dirs, tiny_dir, monkeypatch, {"TRAIN_DATA_PATH": str(data), "TRAIN_EPOCHS": "3",
                                               "TRAIN_BATCH_SIZE": "4"}, ("--lr", "0.01", "--block-size", "32")) == 0
    metrics = dirs.metrics()
    assert metrics["records"] == 60 and metrics["loss_after"] < metrics["loss_before"]
    log = dirs.log()
    assert "examples chat 30, prompt/completion 30" in log and "default transcript chat template" in log


def test_a_conversation_the_template_refuses_names_its_line(tmp_path: Path, tiny_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    template = tmp_path / "strict"
    template.mkdir()
    for file in tiny_dir.iterdir():
        (template / file.name).symlink_to(file)
    config = json.loads((tiny_dir / "tokenizer_config.json").read_text())
    config["chat_template"] = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                               "{{ raise_exception('no system role') }}{% endif %}{{ m['content'] }}{% endfor %}")
    (template / "tokenizer_config.json").unlink()
    (template / "tokenizer_config.json").write_text(json.dumps(config))
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
                    + "\n" + json.dumps({"messages": [{"role": "system", "content": "s"},
                                                      {"role": "assistant", "content": "a"}]}) + "\n")
    assert train(Dirs(tmp_path), template, monkeypatch, {"TRAIN_DATA_PATH": str(data)}) == 1
    err = capsys.readouterr().err
    assert f"{data}:2: the chat template refused the conversation" in err and "no system role" in err
