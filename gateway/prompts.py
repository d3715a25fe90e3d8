"""Gateway-side chat templates: OpenAI messages → one prompt string for llama-server's /completion.

Each format reproduces the chat template its model family ships with (the BOS token is left out: llama-server's
tokenizer adds it). `stop` lists the end-of-turn markers, so generation ends where the family's turn ends.
Also how many prompts llama-server reads in a text completion's `prompt` (the gateway and the fake backend agree).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Template:
    render: Callable[[list[dict]], str]
    stop: tuple[str, ...]


def message_text(content: str | list | None) -> str:
    """A message's text: a plain string, or its text parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content if part.get("type") == "text")


def _chatml(messages: list[dict]) -> str:
    turns = [f"<|im_start|>{m['role']}\n{message_text(m.get('content'))}<|im_end|>" for m in messages]
    return "\n".join([*turns, "<|im_start|>assistant\n"])


def _deepseek_r1(messages: list[dict]) -> str:
    # As DeepSeek-R1's tokenizer_config template: system text first, then User/Assistant turns; earlier
    # answers lose their reasoning (everything up to </think>).
    system = "\n\n".join(message_text(m.get("content")) for m in messages if m["role"] == "system")
    out = [system]
    for m in messages:
        text = message_text(m.get("content"))
        if m["role"] == "user":
            out.append(f"<｜User｜>{text}")
        elif m["role"] == "assistant":
            out.append(f"<｜Assistant｜>{text.split('</think>')[-1]}<｜end▁of▁sentence｜>")
    out.append("<｜Assistant｜>")
    return "".join(out)


def _gemma(messages: list[dict]) -> str:
    # Gemma has no system role: its template puts the system text at the head of the first user turn.
    system = "\n\n".join(message_text(m.get("content")) for m in messages if m["role"] == "system")
    out = []
    for m in messages:
        if m["role"] == "system":
            continue
        text = message_text(m.get("content")).strip()
        if system and m["role"] == "user":
            text, system = f"{system}\n\n{text}", ""
        role = "model" if m["role"] == "assistant" else "user"
        out.append(f"<start_of_turn>{role}\n{text}<end_of_turn>\n")
    out.append("<start_of_turn>model\n")
    return "".join(out)


def _llama3(messages: list[dict]) -> str:
    turns = [
        f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{message_text(m.get('content')).strip()}<|eot_id|>"
        for m in messages
    ]
    return "".join([*turns, "<|start_header_id|>assistant<|end_header_id|>\n\n"])


TEMPLATES: dict[str, Template] = {
    "chatml": Template(_chatml, ("<|im_end|>", "<|im_start|>")),
    "deepseek-r1": Template(_deepseek_r1, ("<｜end▁of▁sentence｜>", "<｜User｜>")),
    "gemma": Template(_gemma, ("<end_of_turn>", "<start_of_turn>")),
    "llama3": Template(_llama3, ("<|eot_id|>", "<|start_header_id|>")),
}


def render(prompt_format: str, messages: list[dict]) -> tuple[str, list[str]]:
    """The prompt string and the stop strings for a gateway-side format."""
    template = TEMPLATES[prompt_format]
    # OpenAI's newer "developer" role is the system role under another name.
    messages = [{**m, "role": "system"} if m["role"] == "developer" else m for m in messages]
    return template.render(messages), list(template.stop)


def prompt_count(prompt: Any) -> int:
    """How many prompts llama-server reads in a completion's `prompt`, by its rule: a string, a list of token ids,
    or a list mixing token ids and strings is one; any other list is one prompt per item."""
    if not isinstance(prompt, list):
        return 1
    kinds = {int if isinstance(item, int) and not isinstance(item, bool) else type(item) for item in prompt}
    return 1 if kinds == {int} or kinds == {int, str} else len(prompt)
