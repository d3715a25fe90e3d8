"""How much memory a llama-server will need for a GGUF, from its header alone (no weights are read).

need = weights (the tensors' bytes, plus the vision projector's) + KV cache (per layer: cells x (key_length +
value_length) x head_count_kv x bytes per element; sliding-window layers keep only their window) + a compute
margin (the graph's largest intermediate tensors for one micro-batch, the output logits, and the process itself)
+ the prompt cache (llama-server's --cache-ram: host memory that fills up to its limit as prompts are saved).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway import ggufinfo
from gateway.lifecycle import flags

MIB = 1024 * 1024
PROCESS_OVERHEAD = 64 * MIB  # the binary, the tokenizer, allocator slack: what a 270M model's RSS shows beyond buffers
DEFAULT_UBATCH = 512
SWA_PADDING = 256  # llama.cpp pads the sliding-window cache to 256 cells
# Architectures whose sliding-window layout llama.cpp hard-codes (every n-th layer sees the whole context) when the
# GGUF does not carry `<arch>.attention.sliding_window_pattern`.
SWA_PERIODS = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "gpt-oss": 2, "exaone4": 4, "llama4": 4}


class EstimateError(Exception):
    pass


@dataclass(frozen=True)
class Header:
    """What an estimate needs from a GGUF: its hyperparameters and the bytes of its tensors."""

    architecture: str
    fields: dict[str, Any]
    tensor_bytes: int
    vocab_size: int = 0

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(f"{self.architecture}.{name}", default)


def read_header(path: str | Path) -> Header:
    """The GGUF's hyperparameters and tensor sizes, from its header alone (gateway.ggufinfo)."""
    try:
        fields, tensor_bytes = ggufinfo.header(path)
    except (OSError, ggufinfo.NotGGUF) as exc:
        raise EstimateError(f"cannot read the GGUF header of {path}: {exc}") from exc
    tokens = fields.get("tokenizer.ggml.tokens")
    vocab = tokens.length if isinstance(tokens, ggufinfo.Skipped) else len(tokens) if isinstance(tokens, list) else 0
    return Header(str(fields.get("general.architecture", "")), fields, tensor_bytes, vocab)


@dataclass(frozen=True)
class Estimate:
    weights: int
    kv: int
    compute: int
    prompt_cache: int
    # Some layers keep only a sliding window of the context (no --swa-full): a slot's cache saved to disk and
    # restored is not reused then (llama.cpp cannot roll such a cache back), so it is not worth saving.
    windowed: bool = False

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + self.prompt_cache

    def as_dict(self) -> dict[str, int]:
        sizes = {name: value for name, value in asdict(self).items() if name != "windowed"}
        return {**sizes, "total": self.total}

    def describe(self) -> str:
        return (
            f"{self.total / MIB:.0f} MiB (weights {self.weights / MIB:.0f} + KV cache {self.kv / MIB:.0f} "
            f"+ compute {self.compute / MIB:.0f}"
            + (f" + prompt cache {self.prompt_cache / MIB:.0f})" if self.prompt_cache else ")")
        )


@dataclass(frozen=True)
class Options:
    """The llama-server flags that change memory: context, slots, the prompt cache's limit (MiB, 0 = off), and what
    may be in the extra arguments."""

    ctx_size: int
    parallel: int = 1
    ubatch: int = DEFAULT_UBATCH
    kv_unified: bool = False
    swa_full: bool = False
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    cache_ram_mb: int = 0

    @classmethod
    def from_flags(cls, ctx_size: int, parallel: int, extra_args: str, cache_ram_mb: int = 0) -> Options:
        """The options of a command line with these fields and `llama_args` (EstimateError when they are refused)."""
        try:
            args = flags.parse(extra_args)
        except flags.FlagError as exc:
            raise EstimateError(f"llama_args: {exc}") from None
        return cls.from_args(ctx_size, parallel, args, cache_ram_mb)

    @classmethod
    def from_args(cls, ctx_size: int, parallel: int, args: list[str], cache_ram_mb: int = 0) -> Options:
        """The options of a command line with these fields and `args`, parsed already (gateway.lifecycle.flags)."""
        given = flags.values(args)
        ubatch = given.get("--ubatch-size", "")
        return cls(
            ctx_size=ctx_size,
            parallel=max(parallel, 1),
            ubatch=int(ubatch) if isinstance(ubatch, str) and ubatch.isdigit() else DEFAULT_UBATCH,
            kv_unified=given.get("--kv-unified") is True,
            swa_full=given.get("--swa-full") is True,
            cache_type_k=str(given.get("--cache-type-k", "f16")).lower(),
            cache_type_v=str(given.get("--cache-type-v", "f16")).lower(),
            cache_ram_mb=cache_ram_mb,
        )


def _bytes_per_element(type_name: str) -> float:
    try:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # numpy with it: only where an estimate is made

        block, size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name.upper()]]
    except KeyError:
        raise EstimateError(f"unknown KV cache type {type_name!r}") from None
    return size / block


def _pad(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def _per_layer(value: Any, layers: int) -> list[int]:
    if isinstance(value, list):
        return [int(v) for v in value[:layers]] + [int(value[-1])] * max(0, layers - len(value))
    return [int(value or 0)] * layers


def _sliding_layers(header: Header, layers: int) -> list[bool]:
    """Which layers use the sliding window, as llama.cpp decides it."""
    if not header.get("attention.sliding_window"):
        return [False] * layers
    pattern = header.get("attention.sliding_window_pattern")
    if isinstance(pattern, list):
        return [bool(v) for v in _per_layer(pattern, layers)]
    period = int(pattern) if isinstance(pattern, int) and pattern > 0 else SWA_PERIODS.get(header.architecture)
    if period is None:
        return [False] * layers  # unknown layout: count every layer at full context (an overestimate)
    return [index % period < period - 1 for index in range(layers)]


def kv_cache_bytes(header: Header, options: Options) -> int:
    layers = int(header.get("block_count") or 0)
    if not layers:
        raise EstimateError(f"the GGUF has no {header.architecture}.block_count")
    head_count = header.get("attention.head_count")
    heads_kv = _per_layer(header.get("attention.head_count_kv", head_count), layers)
    embedding = int(header.get("embedding_length") or 0)
    default_head = embedding // max(_per_layer(head_count, layers)[0], 1) if head_count else 0
    key_length = int(header.get("attention.key_length") or default_head)
    value_length = int(header.get("attention.value_length") or default_head)
    streams = 1 if options.kv_unified else options.parallel
    # Each stream (one per slot unless the cache is unified) holds its share of the context.
    base_cells = _pad(options.ctx_size, SWA_PADDING) // streams
    window = int(header.get("attention.sliding_window") or 0)
    sliding_cells = base_cells
    if window and not options.swa_full:
        sliding_cells = _pad(
            min(base_cells, window * (options.parallel if options.kv_unified else 1) + options.ubatch), SWA_PADDING
        )
    k_size, v_size = _bytes_per_element(options.cache_type_k), _bytes_per_element(options.cache_type_v)
    total = 0.0
    for heads, sliding in zip(heads_kv, _sliding_layers(header, layers), strict=True):
        cells = sliding_cells if sliding else base_cells
        total += streams * cells * heads * (key_length * k_size + value_length * v_size)
    return int(total)


def compute_bytes(header: Header, options: Options) -> int:
    """The margin beyond weights and cache: one micro-batch's attention scores, feed-forward and embeddings in f32,
    the logits of one output per slot, and the process's own overhead."""
    layers = int(header.get("block_count") or 1)
    heads = max(_per_layer(header.get("attention.head_count", 1), layers))
    feed_forward = max(_per_layer(header.get("feed_forward_length", 0), layers))
    embedding = int(header.get("embedding_length") or 0)
    vocab = int(header.get("vocab_size") or 0) or header.vocab_size
    cells = _pad(options.ctx_size, SWA_PADDING) // (1 if options.kv_unified else options.parallel)
    graph = options.ubatch * 4 * (heads * cells + feed_forward + 4 * embedding)
    logits = vocab * options.parallel * 4
    return graph + logits + PROCESS_OVERHEAD


def estimate(
    gguf_path: str | Path, options: Options, mmproj_path: str | Path | None = None, header: Header | None = None
) -> Estimate:
    header = header or read_header(gguf_path)
    weights = header.tensor_bytes
    if mmproj_path:
        weights += read_header(mmproj_path).tensor_bytes
    return Estimate(
        weights=weights,
        kv=kv_cache_bytes(header, options),
        compute=compute_bytes(header, options),
        prompt_cache=options.cache_ram_mb * MIB,
        windowed=windowed(header, options),
    )


def windowed(header: Header, options: Options) -> bool:
    layers = int(header.get("block_count") or 0)
    return not options.swa_full and any(_sliding_layers(header, layers))
