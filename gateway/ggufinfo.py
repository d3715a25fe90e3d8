"""A model's GGUF header, read without loading the model: whether it carries its own chat template (read from the
file, or asked of a backend), and its metadata and tensor sizes (gateway.lifecycle.estimate's memory estimate).

Without `tokenizer.chat_template` (a base model, such as the bundled Gemma 3 270M) llama-server falls back to
ChatML for /v1/chat/completions, and the model answers with echoed `<|im_end|>` markers. The gateway says so where a
new user meets it: the `runlocal` banner, the admin's model list, the dashboard's chat page.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import mmap
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from django.conf import settings

from gateway import upstream

CHAT_TEMPLATE_KEY = "tokenizer.chat_template"  # gguf's Keys.Tokenizer.CHAT_TEMPLATE
CACHE_SECONDS = 30.0  # a backend's answer is reused this long (the admin and the dashboard ask often)
SUPPORTED_VERSIONS = (2, 3)
LONG_ARRAY = 4096  # items beyond which an array (the vocabulary, its scores) is skipped, only its length kept


@functools.cache
def _spec() -> SimpleNamespace:
    """gguf's tables, imported when a header is first read: the package pulls numpy in (about 25 MB), which a process
    that never reads a GGUF (daphne serving the API) should not carry."""
    from gguf import GGML_QUANT_SIZES, GGUF_MAGIC, GGMLQuantizationType
    from gguf import GGUFValueType as T

    # Bytes of each fixed-size value type, and its struct format; strings and arrays are walked.
    fixed = {T.UINT8: "B", T.INT8: "b", T.BOOL: "?", T.UINT16: "H", T.INT16: "h", T.UINT32: "I", T.INT32: "i",
             T.FLOAT32: "f", T.UINT64: "Q", T.INT64: "q", T.FLOAT64: "d"}  # fmt: skip
    sizes = {kind: struct.calcsize("<" + code) for kind, code in fixed.items()}
    return SimpleNamespace(magic=GGUF_MAGIC, types=T, sizes=sizes, formats=fixed, quant_sizes=GGML_QUANT_SIZES,
                           quant_type=GGMLQuantizationType)  # fmt: skip


class NotGGUF(ValueError):
    """The file is not a GGUF this module can read (wrong magic, unknown version, cut short)."""


class _Header:
    """A walk over a GGUF's key/value metadata that skips values it is not asked for.

    gguf's own GGUFReader turns every vocabulary entry into numpy views: 36 s for the bundled model's 262,144
    tokens on this project's 2 busy cores. Skipping them with struct takes a fraction of a second; tensors and
    weights are never read.
    """

    def __init__(self, data: mmap.mmap) -> None:
        self.data = data
        self.spec = spec = _spec()
        self.sizes, self.formats, self.types = spec.sizes, spec.formats, spec.types
        if len(data) < 24 or struct.unpack_from("<I", data, 0)[0] != spec.magic:
            raise NotGGUF("no GGUF magic")
        self.order = "<"
        version = struct.unpack_from("<I", data, 4)[0]
        if version & 0xFFFF == 0:  # written on a big-endian machine
            self.order = ">"
            version = struct.unpack_from(">I", data, 4)[0]
        if version not in SUPPORTED_VERSIONS:
            raise NotGGUF(f"GGUF version {version} is not supported")
        self.u32, self.u64 = struct.Struct(self.order + "I"), struct.Struct(self.order + "Q")
        self.kv_count = self.u64.unpack_from(data, 16)[0]
        self.offset = 24

    def string(self) -> str:
        length = self.u64.unpack_from(self.data, self.offset)[0]
        start = self.offset + 8
        if start + length > len(self.data):
            raise NotGGUF("a string runs past the end of the file")
        self.offset = start + length
        return self.data[start : self.offset].decode("utf-8", errors="replace")

    def skip(self, kind: int) -> None:
        if kind in self.sizes:
            self.offset += self.sizes[kind]
        elif kind == self.types.STRING:
            self.offset += 8 + self.u64.unpack_from(self.data, self.offset)[0]
        elif kind == self.types.ARRAY:
            item = self.u32.unpack_from(self.data, self.offset)[0]
            count = self.u64.unpack_from(self.data, self.offset + 4)[0]
            self.offset += 12
            if item in self.sizes:
                self.offset += count * self.sizes[item]
            else:
                for _ in range(count):
                    self.skip(item)
        else:
            raise NotGGUF(f"unknown value type {kind}")
        if self.offset > len(self.data):
            raise NotGGUF("metadata runs past the end of the file")

    def value(self, kind: int) -> object:
        """The value at the cursor; an array longer than LONG_ARRAY is skipped and given as Skipped(length)."""
        if kind in self.formats:
            value = struct.unpack_from(self.order + self.formats[kind], self.data, self.offset)[0]
            self.offset += self.sizes[kind]
            return value
        if kind == self.types.STRING:
            return self.string()
        if kind == self.types.ARRAY:
            item = self.u32.unpack_from(self.data, self.offset)[0]
            count = self.u64.unpack_from(self.data, self.offset + 4)[0]
            if count > LONG_ARRAY:
                self.skip(kind)
                return Skipped(count)
            self.offset += 12
            return [self.value(item) for _ in range(count)]
        raise NotGGUF(f"unknown value type {kind}")

    def metadata(self) -> dict[str, object]:
        """Every key and its value (long arrays as Skipped); the cursor ends at the tensor infos."""
        found = {}
        for _ in range(self.kv_count):
            name = self.string()
            kind = self.u32.unpack_from(self.data, self.offset)[0]
            self.offset += 4
            found[name] = self.value(kind)
        return found

    def tensor_bytes(self, tensor_count: int) -> int:
        """The size of every tensor, from the tensor infos that follow the metadata (their data is never read)."""
        total = 0
        for _ in range(tensor_count):
            self.string()  # the name
            dims = self.u32.unpack_from(self.data, self.offset)[0]
            shape = struct.unpack_from(f"{self.order}{dims}Q", self.data, self.offset + 4)
            self.offset += 4 + 8 * dims
            kind = self.u32.unpack_from(self.data, self.offset)[0]
            self.offset += 12  # the type, then the data's offset
            block, size = self.spec.quant_sizes[self.spec.quant_type(kind)]
            total += math.prod(shape) * size // block
        return total

    def find(self, key: str) -> str | None:
        """The string value of `key`, or None when the metadata has no such key."""
        for _ in range(self.kv_count):
            name = self.string()
            kind = self.u32.unpack_from(self.data, self.offset)[0]
            self.offset += 4
            if name == key and kind == self.types.STRING:
                return self.string()
            self.skip(kind)
        return None


@dataclass(frozen=True)
class Skipped:
    """A long array of the metadata (the vocabulary, …), not read: its length."""

    length: int


@functools.lru_cache(maxsize=32)
def _header(path: Path, _size: int, _mtime_ns: int) -> tuple[dict[str, object], int]:
    if not _size:
        raise NotGGUF("empty file")
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            reader = _Header(data)
            tensor_count = reader.u64.unpack_from(data, 8)[0]
            return reader.metadata(), reader.tensor_bytes(tensor_count)
        except (struct.error, ValueError) as exc:  # cut short, or a tensor type gguf does not know
            raise NotGGUF(f"header unreadable: {exc}") from exc


def header(path: Path | str) -> tuple[dict[str, object], int]:
    """(every metadata key and value, the bytes of all tensors) of a GGUF, from its header alone.

    Raises OSError when the file cannot be read and NotGGUF when it is not a GGUF.
    """
    path = Path(path).resolve()
    stat = path.stat()
    return _header(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _chat_template(path: Path, _size: int, _mtime_ns: int) -> str | None:
    # Keyed on size and mtime too: a file replaced in place is read again.
    if not _size:
        raise NotGGUF("empty file")
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            return _Header(data).find(CHAT_TEMPLATE_KEY)
        except struct.error as exc:
            raise NotGGUF("metadata cut short") from exc


def chat_template(path: Path | str) -> str | None:
    """The GGUF's own chat template (`tokenizer.chat_template`), or None when its header has none.

    Raises OSError when the file cannot be read and NotGGUF when it is not a GGUF.
    """
    path = Path(path).resolve()
    stat = path.stat()
    return _chat_template(path, stat.st_size, stat.st_mtime_ns)


def has_chat_template(path: Path | str) -> bool:
    return bool(chat_template(path))


@dataclass(frozen=True)
class TemplateCheck:
    """Whether a backend's GGUF has its own chat template: True, False or None (unknown), and why."""

    has_template: bool | None
    detail: str

    @property
    def label(self) -> str:
        return {True: "yes", False: "no", None: "unknown"}[self.has_template]


_checks: dict[tuple[str, str], tuple[float, TemplateCheck]] = {}


def file_check(model_path: str) -> TemplateCheck:
    """The verdict on a GGUF named by a backend, when that file is readable here."""
    try:
        found = has_chat_template(model_path)
    except (OSError, NotGGUF) as exc:
        return TemplateCheck(None, f"{model_path} cannot be read here ({exc.__class__.__name__}: {exc})")
    if found:
        return TemplateCheck(True, f"{model_path} has its own chat template")
    return TemplateCheck(False, f"{model_path} has no tokenizer.chat_template: llama-server falls back to ChatML")


async def _ask(target: upstream.Target) -> TemplateCheck:
    try:
        status, raw = await upstream.get(target, "/props", settings.HEALTH_TIMEOUT)
    except upstream.UpstreamError:
        return TemplateCheck(None, "backend unreachable")
    if status != 200:
        return TemplateCheck(None, f"/props answered {status}")
    try:
        model_path = json.loads(raw).get("model_path")
    except (ValueError, AttributeError):
        model_path = None
    if not isinstance(model_path, str) or not model_path:
        return TemplateCheck(None, "/props names no model_path")
    return await asyncio.to_thread(file_check, model_path)


async def backend_check(base_url: str, api_key: str = "") -> TemplateCheck:
    """Ask the backend's /props for its GGUF and read that file's header; answers are cached CACHE_SECONDS."""
    key = (base_url.rstrip("/"), api_key)
    cached = _checks.get(key)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    check = await _ask(upstream.Target(*key))
    _checks[key] = (time.monotonic() + CACHE_SECONDS, check)
    return check


def backend_checks(backends: Iterable[tuple[str, str]]) -> dict[tuple[str, str], TemplateCheck]:
    """`backend_check` for synchronous callers (the admin), every (base_url, api_key) at once.

    Cached answers are used as they are; the others are asked in a private event loop whose connection pool is
    closed before it ends (a request thread has no loop of its own to keep one on).
    """
    wanted = {(url.rstrip("/"), key) for url, key in backends}
    now = time.monotonic()
    missing = [b for b in wanted if not (b in _checks and _checks[b][0] > now)]

    async def ask_all() -> None:
        try:
            await asyncio.gather(*(backend_check(url, key) for url, key in missing))
        finally:
            await upstream.close_sessions()

    if missing:
        asyncio.run(ask_all())
    return {b: _checks[b][1] for b in wanted}
