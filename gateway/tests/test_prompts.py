"""Each gateway-side prompt format renders exactly the string its model family's chat template produces."""

from __future__ import annotations

from gateway import prompts

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
]


def test_chatml_matches_qwens_template() -> None:
    prompt, stop = prompts.render("chatml", CONVERSATION)
    assert prompt == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert "<|im_end|>" in stop


def test_deepseek_r1_matches_its_template_and_drops_old_reasoning() -> None:
    messages = [*CONVERSATION[:2], {"role": "assistant", "content": "<think>easy</think>Hello."}, CONVERSATION[3]]
    prompt, stop = prompts.render("deepseek-r1", messages)
    assert prompt == (
        "You are terse.<｜User｜>Hi<｜Assistant｜>Hello.<｜end▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜>"
    )
    assert "<｜end▁of▁sentence｜>" in stop


def test_gemma_folds_the_system_prompt_into_the_first_user_turn() -> None:
    prompt, stop = prompts.render("gemma", CONVERSATION)
    assert prompt == (
        "<start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert "<end_of_turn>" in stop


def test_llama3_matches_its_template() -> None:
    prompt, stop = prompts.render("llama3", CONVERSATION)
    assert prompt == (
        "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert "<|eot_id|>" in stop


def test_the_developer_role_is_treated_as_system() -> None:
    as_developer, _ = prompts.render(
        "chatml", [{"role": "developer", "content": "Rules."}, {"role": "user", "content": "Hi"}]
    )
    as_system, _ = prompts.render(
        "chatml", [{"role": "system", "content": "Rules."}, {"role": "user", "content": "Hi"}]
    )
    assert as_developer == as_system


def test_chatml_matches_the_real_models_own_template(llama_chat: object) -> None:
    """The small model's GGUF carries a ChatML template: llama-server's rendering of it must equal ours."""
    import httpx

    messages = [{"role": "system", "content": "S"}, *CONVERSATION[1:]]
    response = httpx.post(f"{llama_chat.url}/apply-template", json={"messages": messages}, timeout=30)  # type: ignore[attr-defined]
    assert response.status_code == 200, response.text
    ours, _ = prompts.render("chatml", messages)
    assert response.json()["prompt"].removeprefix("<bos>") == ours
