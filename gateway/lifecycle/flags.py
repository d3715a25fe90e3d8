"""The one parser of a managed model's `llama_args`: extra llama-server flags, allowed only when they tune compute or
sampling; where the process listens, who may call it, what it serves or writes, and what its memory budget counts
belong to the supervisor and to the backend's own fields."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

VALUE, SWITCH = True, False

# Flags that may be given, as llama-server spells them (any spelling of a row sets the same thing; after "/", the
# spellings that unset a switch) → whether the flag takes a value. llama-server itself knows `--flag value` only:
# `--flag=value` is accepted here and passed on split.
ALLOWED: list[tuple[str, bool]] = [
    # Threads and batches: how fast it computes, not what it serves.
    ("-t --threads", VALUE),
    ("-tb --threads-batch", VALUE),
    ("-b --batch-size", VALUE),
    ("-ub --ubatch-size", VALUE),
    ("-cb --cont-batching / -nocb --no-cont-batching", SWITCH),
    ("--numa", VALUE),
    ("-C --cpu-mask", VALUE),
    ("-Cr --cpu-range", VALUE),
    ("--cpu-strict", VALUE),
    ("--poll", VALUE),
    # Where the layers, tensors and KV cache are computed (GPU offload): the same work placed elsewhere.
    ("-ngl --gpu-layers --n-gpu-layers", VALUE),
    ("-sm --split-mode", VALUE),
    ("-ts --tensor-split", VALUE),
    ("-mg --main-gpu", VALUE),
    ("-dev --device", VALUE),
    ("-ot --override-tensor", VALUE),
    ("-cmoe --cpu-moe", SWITCH),
    ("-ncmoe --n-cpu-moe", VALUE),
    ("-ncffn --n-cpu-ffn", VALUE),
    ("--no-host", SWITCH),
    ("-kvo --kv-offload / -nkvo --no-kv-offload", SWITCH),
    ("--op-offload / --no-op-offload", SWITCH),
    ("--mmproj-offload / --no-mmproj-offload", SWITCH),
    ("-mmdev --mmproj-device", VALUE),
    ("-fa --flash-attn", VALUE),
    # How the weights are loaded and kept in RAM (--mlock, --mmap, --no-mmap: older builds' spellings of --load-mode).
    ("-lm --load-mode", VALUE),
    ("--mlock", SWITCH),
    ("--mmap / --no-mmap", SWITCH),
    ("--repack / -nr --no-repack", SWITCH),
    ("--warmup / --no-warmup", SWITCH),
    # The KV cache's element types and layout (the memory estimate reads them) and how it is reused and shifted.
    ("-ctk --cache-type-k", VALUE),
    ("-ctv --cache-type-v", VALUE),
    ("-kvu --kv-unified / -no-kvu --no-kv-unified", SWITCH),
    ("--swa-full", SWITCH),
    ("-dt --defrag-thold", VALUE),
    ("--context-shift / --no-context-shift", SWITCH),
    ("--keep", VALUE),
    ("--cache-prompt / --no-cache-prompt", SWITCH),
    ("--cache-reuse", VALUE),
    ("-sps --slot-prompt-similarity", VALUE),
    ("--cache-idle-slots / --no-cache-idle-slots", SWITCH),
    # Position encoding: RoPE and YaRN scaling of the model's context.
    ("--rope-scaling", VALUE),
    ("--rope-scale", VALUE),
    ("--rope-freq-base", VALUE),
    ("--rope-freq-scale", VALUE),
    ("--yarn-orig-ctx", VALUE),
    ("--yarn-ext-factor", VALUE),
    ("--yarn-attn-factor", VALUE),
    ("--yarn-beta-slow", VALUE),
    ("--yarn-beta-fast", VALUE),
    # How an embedding model pools its outputs (whether it serves embeddings is its kind's decision).
    ("--pooling", VALUE),
    # How many tokens an image becomes, for a vision model's projector.
    ("--image-min-tokens", VALUE),
    ("--image-max-tokens", VALUE),
    # Sampling defaults: a request's own parameters override them.
    ("--temp --temperature", VALUE),
    ("--top-k", VALUE),
    ("--top-p", VALUE),
    ("--min-p", VALUE),
    ("--typical --typical-p", VALUE),
    ("--top-nsigma --top-n-sigma", VALUE),
    ("--xtc-probability", VALUE),
    ("--xtc-threshold", VALUE),
    ("--repeat-last-n", VALUE),
    ("--repeat-penalty", VALUE),
    ("--presence-penalty", VALUE),
    ("--frequency-penalty", VALUE),
    ("--dry-multiplier", VALUE),
    ("--dry-base", VALUE),
    ("--dry-allowed-length", VALUE),
    ("--dry-penalty-last-n", VALUE),
    ("--dry-sequence-breaker", VALUE),
    ("--dynatemp-range", VALUE),
    ("--dynatemp-exp", VALUE),
    ("--mirostat", VALUE),
    ("--mirostat-lr", VALUE),
    ("--mirostat-ent", VALUE),
    ("--samplers", VALUE),
    ("--sampler-seq --sampling-seq", VALUE),
    ("-s --seed", VALUE),
    ("--adaptive-target", VALUE),
    ("--adaptive-decay", VALUE),
    ("-l --logit-bias", VALUE),
    ("--grammar", VALUE),
    ("-j --json-schema", VALUE),
    ("-bs --backend-sampling", SWITCH),
    ("--ignore-eos", SWITCH),
    ("-n --predict --n-predict", VALUE),
    # How messages become a prompt and how reasoning is parsed and bounded (a built-in template or inline text only).
    ("--jinja / --no-jinja", SWITCH),
    ("--chat-template", VALUE),
    ("--chat-template-kwargs", VALUE),
    ("--reasoning-format", VALUE),
    ("-rea --reasoning", VALUE),
    ("--reasoning-effort", VALUE),
    ("--reasoning-budget", VALUE),
    ("--reasoning-budget-message", VALUE),
    ("--reasoning-preserve / --no-reasoning-preserve", SWITCH),
    ("--skip-chat-parsing / --no-skip-chat-parsing", SWITCH),
    ("--prefill-assistant / --no-prefill-assistant", SWITCH),
]

# Flags refused with a reason: the supervisor's, a field's, or a door the admin form must not open.
REFUSED: list[tuple[str, str]] = [
    ("--host --port --reuse-port", "where it listens is the supervisor's (LLAMA_HOST, a free port)"),
    ("--api-key --api-key-file", "who may call it is set by the backend's api_key field"),
    ("--ssl-key-file --ssl-cert-file", "the supervisor and the gateway speak plain HTTP to it"),
    ("--cors-origins --cors-methods --cors-headers --cors-credentials --no-cors-credentials",
     "who may call it is the gateway's business"),
    ("--path --api-prefix --media-path --ui --webui --no-ui --no-webui --ui-config --webui-config --ui-config-file "
     "--webui-config-file --ui-mcp-proxy --webui-mcp-proxy --no-ui-mcp-proxy --no-webui-mcp-proxy",
     "what it serves is the supervisor's (it could publish files of this machine)"),
    ("--tools --tools-runtime --mcp-servers-config --mcp-servers-json -ag --agent -no-ag --no-agent",
     "tools run things on this machine"),
    ("--metrics --slots --no-slots --props", "the endpoints it opens are the supervisor's (the monitor reads "
     "/metrics and /slots; --props would let any caller change its settings)"),
    ("-m --model -mu --model-url -hf -hfr --hf-repo -hff --hf-file -hft --hf-token -dr --docker-repo --offline",
     "the model is the GGUF field's"),
    ("-mm --mmproj -mmu --mmproj-url --mmproj-auto --no-mmproj --no-mmproj-auto", "the projector is its field's"),
    ("-c --ctx-size", "use the ctx_size field"),
    ("-np --parallel", "use the parallel field"),
    ("--kv-unified-per-slot", "the KV cache's size is the ctx_size and parallel fields'"),
    ("-cram --cache-ram", "use the cache_ram_mb field (the memory budget counts it)"),
    ("-fit --fit -fitt --fit-target -fitc --fit-ctx", "what fits in memory is the supervisor's decision"),
    ("--embedding --embeddings", "the model's kind decides it (make the model's kind embedding)"),
    ("--rerank --reranking", "the model's kind decides it (make the model's kind rerank)"),
    ("-a --alias --tags", "the model's id and aliases are the registry's"),
    ("--slot-save-path --log-file --log-prompts-dir",
     "what it writes to disk is the supervisor's (its log goes to VAR_DIR/llama)"),
    ("-v --verbose --log-verbose", "it would write requests and prompts to its log"),
    ("-lv --verbosity --log-verbosity --log-disable", "the supervisor reads the memory it uses from its log"),
    ("--chat-template-file --grammar-file -jf --json-schema-file",
     "it would read a file of this machine (give the template or grammar inline)"),
    ("--lora --lora-scaled --control-vector --control-vector-scaled -md --model-draft --spec-draft-model -hfd "
     "-hfrd --hf-repo-draft --spec-draft-hf", "it loads another model file, which the memory estimate does not count"),
    ("--rpc", "it would send the model's work to other machines"),
    ("--video-ffmpeg-dir", "it would run programs from a directory of this machine"),
    ("--models-dir --models-preset --models-max --models-autoload --no-models-autoload --sleep-idle-seconds",
     "the supervisor runs one model per process and stops it when idle"),
]  # fmt: skip

NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class FlagError(ValueError):
    pass


@dataclass(frozen=True)
class Flag:
    """One row of ALLOWED: the spellings that set it, those that unset it, and whether it takes a value."""

    names: tuple[str, ...]
    negations: tuple[str, ...]
    takes_value: bool

    @property
    def key(self) -> str:
        """Its first long spelling, the name `values` reports it under."""
        return next(name for name in self.names if name.startswith("--"))


def _flags() -> dict[str, Flag]:
    by_spelling: dict[str, Flag] = {}
    for spellings, takes_value in ALLOWED:
        names, _, negations = spellings.partition(" / ")
        flag = Flag(tuple(names.split()), tuple(negations.split()), takes_value)
        by_spelling.update(dict.fromkeys(flag.names + flag.negations, flag))
    return by_spelling


FLAGS = _flags()
REASONS = {name: reason for names, reason in REFUSED for name in names.split()}


def _spelling(word: str) -> str:
    # llama-server reads "_" as "-" in long flags (--n_gpu_layers is --n-gpu-layers): so must the checks.
    return word.replace("_", "-") if word.startswith("--") else word


def parse(text: str) -> list[str]:
    """`llama_args` as llama-server's arguments (each `--flag=value` split in two); FlagError when the quoting is bad
    or a flag is not allowed, with a message saying which and why."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise FlagError(f"cannot be split into flags: {exc} (check the quotes)") from None
    args: list[str] = []
    position = 0
    while position < len(words):
        word = words[position]
        position += 1
        if not word.startswith("-") or NUMBER.fullmatch(word):
            raise FlagError(f"`{word}` is not a flag (a value must follow the flag that takes it)")
        name, equals, value = word.partition("=")
        name = _spelling(name)
        if name in REASONS:
            raise FlagError(f"`{name}` is not allowed here: {REASONS[name]}")
        flag = FLAGS.get(name)
        if flag is None:
            raise FlagError(f"`{name}` is not allowed here: only flags that tune compute or sampling are (see README)")
        if not flag.takes_value:
            if equals:
                raise FlagError(f"`{name}` takes no value")
            args.append(name)
            continue
        if not equals:
            if position == len(words):
                raise FlagError(f"`{name}` needs a value")
            value = words[position]
            position += 1
        if not value or (value.startswith("-") and not NUMBER.fullmatch(value)):
            raise FlagError(f"`{name}` needs a value, not `{value}`" if value else f"`{name}` needs a value")
        args += [name, value]
    return args


def values(args: list[str]) -> dict[str, str | bool]:
    """What parsed arguments set, by each flag's first long spelling (`--ubatch-size` for -ub too): a value, or
    True/False for a switch; the last one given wins, as in llama-server."""
    found: dict[str, str | bool] = {}
    position = 0
    while position < len(args):
        flag = FLAGS[args[position]]
        if flag.takes_value:
            found[flag.key] = args[position + 1]
            position += 2
        else:
            found[flag.key] = args[position] in flag.names
            position += 1
    return found
