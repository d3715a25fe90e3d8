"""A managed backend as its supervisor runs it: the settings read from its row, checked once, and its command line.

Reading a row never fails: a backend whose flags or GGUF cannot be used is kept on the books with its problem, and
its requests are refused with that problem, while every other model serves.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace

from django.conf import settings

from gateway import llama
from gateway.lifecycle import estimate, flags
from gateway.models import Backend, ModelKind

logger = logging.getLogger(__name__)
MIB = 1024 * 1024


@dataclass(frozen=True)
class Config:
    backend_id: int
    model_id: str
    kind: str
    gguf: str
    mmproj: str
    ctx_size: int
    parallel: int
    gpu_layers: int | None
    args: tuple[str, ...]  # llama_args, parsed and allowed (gateway.lifecycle.flags)
    cache_ram_mb: int  # llama-server's host-memory prompt cache; part of the model's memory
    idle_ttl: float  # 0 = never
    pinned: bool

    @property
    def embeddings(self) -> bool:
        """It computes embeddings or ranks documents (--embeddings, --rerank), and generates nothing: heat and power
        never shed its requests, and it takes no share of the board's energy (gateway.lifecycle.machine)."""
        return self.kind in (ModelKind.EMBEDDING, ModelKind.RERANK)

    @property
    def signature(self) -> str:
        """What a memory measurement depends on; a measurement for another signature is not reused."""
        parts = (self.gguf, self.mmproj, self.ctx_size, self.parallel, self.gpu_layers, self.args, self.kind,
                 self.cache_ram_mb)  # fmt: skip
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]

    def options(self) -> estimate.Options:
        return estimate.Options.from_args(self.ctx_size, self.parallel, list(self.args), self.cache_ram_mb)

    def command(self, port: int, key_file: str, binary: str, save_path: str = "") -> list[str]:
        """The llama-server command line: ours after the operator's tuning flags, so that ours hold. The key is
        read from a file: a command line is readable by every user of the machine. `save_path`: the folder its
        slots are saved to (gateway.lifecycle.promptcache)."""
        known = llama.supported_flags(binary)
        # The supervisor has checked the memory already: llama.cpp's own fitting would load the model twice.
        # -lv 4 makes it log its buffer sizes, which are what the model measurably uses.
        ours = (["--fit", "off"] if "--fit" in known else []) + (["-lv", "4"] if "--verbosity" in known else [])
        # A build without a prompt cache has nothing to bound (its estimate still counts the setting: an overcount).
        cache_ram_mb = self.cache_ram_mb if "--cache-ram" in known else None
        return [
            *llama.command(
                self.gguf, port, settings.LLAMA_HOST, self.ctx_size, self.parallel,
                embeddings=self.kind == ModelKind.EMBEDDING, rerank=self.kind == ModelKind.RERANK, mmproj=self.mmproj,
                gpu_layers=self.gpu_layers, cache_ram_mb=cache_ram_mb, extra_args=list(self.args), binary=binary,
            ),
            *ours,
            *(["--slot-save-path", save_path] if save_path else []),
            "--api-key-file", key_file,
        ]  # fmt: skip


@dataclass(frozen=True)
class Setup:
    """What the supervisor knows of a backend before it runs it: its config and memory estimate, or why it cannot
    be run (`problem`, refused with `problem_code`)."""

    backend_id: int
    model_id: str
    config: Config | None
    estimate: estimate.Estimate | None = None
    problem: str = ""
    problem_code: str = ""
    # What an earlier process with this config was measured holding (its row): a record, not part of the setup.
    measured: int | None = field(default=None, compare=False)
    measured_for: str = field(default="", compare=False)

    @property
    def need(self) -> int:
        return self.estimate.total if self.estimate else 0


def read(backend: Backend) -> Setup:
    """A backend row as the supervisor runs it; never raises (its GGUF header is read here: call it off the loop)."""
    model_id = backend.model.model_id
    try:
        config = Config(
            backend.id, model_id, backend.model.kind, backend.gguf_path, backend.mmproj_path, backend.ctx_size,
            backend.parallel, backend.gpu_layers, tuple(flags.parse(backend.llama_args)),
            backend.prompt_cache_mb,
            float(settings.MODEL_IDLE_TTL if backend.idle_ttl is None else backend.idle_ttl), backend.pinned,
        )  # fmt: skip
    except flags.FlagError as exc:
        problem = f"`{model_id}`: llama_args: {exc}"
        return Setup(backend.id, model_id, None, problem=problem, problem_code="model_misconfigured")
    try:
        need = estimate.estimate(config.gguf, config.options(), config.mmproj or None)
    except estimate.EstimateError as exc:
        return Setup(backend.id, model_id, config, problem=f"`{model_id}`: {exc}", problem_code="model_unreadable")
    except Exception as exc:  # a header the reader chokes on must not take the other models down
        logger.exception("estimate of %s failed", model_id)
        return Setup(backend.id, model_id, config, problem=f"`{model_id}`: cannot estimate its memory: {exc}",
                     problem_code="model_unreadable")  # fmt: skip
    return Setup(backend.id, model_id, config, need)


def with_measurement(setup: Setup, measured: int | None, measured_for: str) -> Setup:
    return replace(setup, measured=measured, measured_for=measured_for)
