"""`llama_args` are parsed once, by gateway.lifecycle.flags: tuning flags pass (split as llama-server reads them),
bad quoting, stray words, smuggled values and every flag that is the supervisor's or a field's are refused, naming
the flag and why."""

from __future__ import annotations

import re
import subprocess

import pytest

from gateway import llama
from gateway.lifecycle import flags


def refusal(text: str) -> str:
    with pytest.raises(flags.FlagError) as caught:
        flags.parse(text)
    return str(caught.value)


def test_it_passes_tuning_flags_in_every_spelling() -> None:
    text = "-t 4 --threads-batch 4 -ub 256 -ngl 99 -fa on -ctk q8_0 --cache-type-v q8_0 -kvu --temp 0.7 --seed -1"
    assert flags.parse(text) == text.split()
    assert flags.parse("--pooling last --chat-template chatml --jinja") == [
        "--pooling", "last", "--chat-template", "chatml", "--jinja",
    ]  # fmt: skip


def test_it_splits_equals_forms_and_reads_underscores_as_llama_server_does() -> None:
    # llama-server knows only `--flag value`, and takes --n_gpu_layers for --n-gpu-layers.
    assert flags.parse("--ubatch-size=128 -ctk=q4_0 --n_gpu_layers 99 --temp=-0.5") == [
        "--ubatch-size", "128", "-ctk", "q4_0", "--n-gpu-layers", "99", "--temp", "-0.5",
    ]  # fmt: skip
    assert flags.parse("--chat-template-kwargs '{\"enable_thinking\": false}'") == [
        "--chat-template-kwargs", '{"enable_thinking": false}',
    ]  # fmt: skip


def test_it_refuses_bad_quoting_with_a_clear_message() -> None:
    assert "check the quotes" in refusal('--ctx-size "1024')
    assert "No closing quotation" in refusal("--chat-template 'chatml")


@pytest.mark.parametrize(
    ("text", "named", "why"),
    [
        ("--host 0.0.0.0", "--host", "where it listens"),
        ("--port=8081", "--port", "where it listens"),
        ("--path /etc/jetson-gateway", "--path", "what it serves"),
        ("--webui", "--webui", "what it serves"),
        ("--api-key secret", "--api-key", "api_key field"),
        ("--api-key-file /tmp/keys", "--api-key-file", "api_key field"),
        ("--ssl-cert-file cert.pem", "--ssl-cert-file", "plain HTTP"),
        ("-m other.gguf", "-m", "GGUF field"),
        ("-hf user/model", "-hf", "GGUF field"),
        ("--mmproj p.gguf", "--mmproj", "projector"),
        ("-c 1024", "-c", "ctx_size field"),
        ("--ctx_size 1024", "--ctx-size", "ctx_size field"),
        ("-np 4", "-np", "parallel field"),
        ("--cache-ram 8192", "--cache-ram", "cache_ram_mb field"),
        ("--fit on", "--fit", "supervisor's decision"),
        ("--embeddings", "--embeddings", "kind"),
        ("--metrics", "--metrics", "endpoints"),
        ("--props", "--props", "endpoints"),
        ("--slot-save-path /tmp", "--slot-save-path", "writes to disk"),
        ("--log-file x.log", "--log-file", "writes to disk"),
        ("--log-prompts-dir /tmp", "--log-prompts-dir", "writes to disk"),
        ("-v", "-v", "prompts to its log"),
        ("-lv 1", "-lv", "reads the memory it uses from its log"),
        ("--chat-template-file /etc/jetson-gateway/env", "--chat-template-file", "read a file"),
        ("-md draft.gguf", "-md", "another model file"),
        ("--alias other", "--alias", "registry's"),
        ("--tools all", "--tools", "run things"),
    ],
)
def test_it_refuses_what_belongs_to_the_supervisor_or_a_field_naming_the_flag_and_why(
    text: str, named: str, why: str
) -> None:
    message = refusal(f"--threads 4 {text}")
    assert f"`{named}` is not allowed here" in message and why in message


def test_it_refuses_flags_outside_the_allowlist() -> None:
    assert "only flags that tune compute or sampling" in refusal("--frobnicate")
    assert "only flags that tune compute or sampling" in refusal(
        "--override-kv tokenizer.ggml.add_bos_token=bool:false"
    )


def test_a_value_cannot_smuggle_a_flag_nor_a_flag_hide_in_a_value() -> None:
    assert refusal("--threads --host 0.0.0.0") == "`--threads` needs a value, not `--host`"
    assert refusal("--pooling") == "`--pooling` needs a value"
    assert refusal("--threads=") == "`--threads` needs a value"
    assert refusal("--mlock=--host") == "`--mlock` takes no value"
    assert "`0.0.0.0` is not a flag" in refusal("--jinja 0.0.0.0")  # a stray positional
    assert "`-1` is not a flag" in refusal("-1")


def test_values_reports_what_the_args_set_by_long_name_the_last_one_winning() -> None:
    args = flags.parse("-ub 128 -kvu --no-kv-unified --ubatch-size=64 -ctk q8_0 --swa-full")
    assert flags.values(args) == {
        "--ubatch-size": "64", "--kv-unified": False, "--cache-type-k": "q8_0", "--swa-full": True,
    }  # fmt: skip
    assert flags.parse("") == [] and flags.values([]) == {}


def test_the_allowlist_agrees_with_the_real_llama_servers_help() -> None:
    """Every allowed spelling is one the real binary knows (but for older builds' spellings) and takes a value exactly
    when the table says so; everything it refuses by name is a real flag too."""
    output = subprocess.run([llama.server_binary(), "--help"], capture_output=True, text=True, timeout=60).stdout
    takes_value: dict[str, bool] = {}
    for line in output.splitlines():
        if line.startswith("-"):  # "-ub,   --ubatch-size N   description": spellings, then the value's name
            spellings = re.split(r"\s{2,}", re.sub(r",\s+", ", ", line))[0].split(", ")
            takes_value.update(dict.fromkeys((s.split(" ")[0] for s in spellings), " " in spellings[-1]))
    assert len(takes_value) > 300, f"cannot read the flags of {llama.server_binary()} --help"

    older_builds = {"--mlock", "--mmap", "--no-mmap"}
    assert {name: flag.takes_value for name, flag in flags.FLAGS.items() if name not in older_builds} == {
        name: takes_value.get(name) for name in flags.FLAGS if name not in older_builds
    }
    assert set(flags.REASONS) <= set(takes_value)
