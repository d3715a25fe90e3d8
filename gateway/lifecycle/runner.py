"""The process runner: starts one model's llama-server, tells the machine when it is running, ready, measured and
gone, and stops it when told (SIGTERM, then SIGKILL after MODEL_STOP_GRACE).

Each process gets a fresh random API key, handed to it in a 0600 file (a command line is readable by every user
of the machine) and to the gateways with each lease: nobody else on the machine, or on the LAN when it listens
there, can use the model without going through a gateway. Its output goes through the supervisor into a log file
that is rotated by size, 0600 in a 0700 folder.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import secrets
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from django.conf import settings
from django.utils import timezone

from gateway import llama, upstream
from gateway.lifecycle import memory
from gateway.lifecycle.config import Setup
from gateway.lifecycle.machine import Event, Exited, Measured, Ready, Spawned

logger = logging.getLogger(__name__)

READY_POLL = 0.025  # seconds between /health probes while a model loads
PEAK_STEP = 16 * 1024 * 1024  # a peak that grew this much is told to the machine
LOG_TAIL_LINES = 12
LOAD_OUTPUT_LIMIT = 1024 * 1024  # bytes of a load's output kept to read its buffer sizes from


def private_folder(path: Path) -> Path:
    """A folder only the service user may enter (0700), with its files 0600 (tightened on existing installs)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    for child in path.iterdir():
        if child.is_file():
            child.chmod(0o600)
    return path


class RotatingLog:
    """A llama-server's output: appended to <name>.log, which moves to .log.1 (and .1 to .2) past `max_bytes`."""

    def __init__(self, path: Path, max_bytes: int, backups: int = 2) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self.file: IO[bytes] = self._open()

    def _open(self) -> IO[bytes]:
        file = open(self.path, "ab")  # noqa: SIM115 (closed in rotate and close)
        os.chmod(self.path, 0o600)
        return file

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.file.flush()
        if self.file.tell() >= self.max_bytes:
            self.rotate()

    def rotate(self) -> None:
        self.file.close()
        for number in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{number}")
            newer = self.path.with_name(f"{self.path.name}.{number - 1}") if number > 1 else self.path
            if newer.exists():
                newer.replace(older)
        self.file = self._open()

    def close(self) -> None:
        self.file.close()


@dataclass
class Process:
    backend: int
    generation: int
    process: asyncio.subprocess.Process | None = None
    terminated: bool = False  # we asked it to stop: a SIGKILL after that is ours, not the OOM killer's
    device_bytes: int = 0  # its buffers outside its resident memory (GPU), from its log
    peak: int | None = None
    told_peak: int = 0
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=LOG_TAIL_LINES))

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def read_peak(self) -> int | None:
        pid = self.pid
        hwm = memory.peak_resident(pid) if pid is not None else None
        if hwm is not None:
            self.peak = max(self.peak or 0, hwm + self.device_bytes)
        return self.peak


class Runner:
    def __init__(self, feed: Callable[[Event], None], save_path: Callable[[Setup], str] = lambda setup: "") -> None:
        self.feed = feed
        self.save_path = save_path  # where a model's slots are saved (gateway.lifecycle.promptcache), or ""
        self.processes: dict[int, Process] = {}  # backend → its one process
        self.tasks: set[asyncio.Task] = set()
        self.folder = private_folder(Path(settings.VAR_DIR) / "llama")
        self.keys = private_folder(self.folder / "keys")

    def pids(self) -> list[int]:
        return [pid for p in self.processes.values() if (pid := p.pid) is not None]

    def spawn(self, backend: int, generation: int, setup: Setup) -> None:
        process = self.processes[backend] = Process(backend, generation)
        task = asyncio.ensure_future(self._run(process, setup))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("a llama-server's runner failed", exc_info=task.exception())

    def terminate(self, backend: int, generation: int) -> None:
        process = self.processes.get(backend)
        if process is None or process.generation != generation:
            return
        process.terminated = True
        if process.process is not None:
            self._stop(process.process)

    def _stop(self, child: asyncio.subprocess.Process) -> None:
        task = asyncio.ensure_future(self._terminate(child))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), settings.MODEL_STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    def measure(self, backend: int, generation: int) -> None:
        process = self.processes.get(backend)
        if process is not None and process.generation == generation and (peak := process.read_peak()) is not None:
            process.told_peak = peak
            self.feed(Measured(backend, generation, peak))

    def watch_peaks(self) -> None:
        """Read every running process's peak; tell the machine the ones that grew (called every few seconds)."""
        for process in self.processes.values():
            if (peak := process.read_peak()) is not None and peak - process.told_peak >= PEAK_STEP:
                process.told_peak = peak
                self.feed(Measured(process.backend, process.generation, peak))

    async def _run(self, process: Process, setup: Setup) -> None:
        """One llama-server from start to exit; every outcome is told to the machine as an event."""
        config = setup.config
        assert config is not None
        port = llama.free_port()
        key = secrets.token_urlsafe(32)
        key_file = self.keys / f"{process.backend}.key"
        log: RotatingLog | None = None
        try:
            key_file.write_text(key)
            key_file.chmod(0o600)
            binary = str(await asyncio.to_thread(llama.server_binary))
            save_path = await asyncio.to_thread(self.save_path, setup)
            command = await asyncio.to_thread(config.command, port, str(key_file), binary, save_path)
            log = RotatingLog(self.folder / f"{config.model_id.replace('/', '_')}.log", settings.LLAMA_LOG_MAX_BYTES)
            log.write(f"==== {timezone.now().isoformat()} supervisor: {shlex.join(command)}\n".encode())
            kills_before = memory.oom_kills()
            process.process = await asyncio.create_subprocess_exec(
                *command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                preexec_fn=llama.die_with_parent, start_new_session=True,
            )  # fmt: skip
        except (OSError, llama.LlamaError) as exc:
            key_file.unlink(missing_ok=True)
            if log is not None:
                log.close()
            del self.processes[process.backend]
            message = f"cannot start llama-server for `{config.model_id}`: {exc}"
            self.feed(Exited(process.backend, process.generation, None, error=message))
            return
        child = process.process
        spawned = time.monotonic()  # llama-server's own load is from exec to ready: the rest is the supervisor's
        if process.terminated:  # told to stop while it was being started
            self._stop(child)
        self.feed(Spawned(process.backend, process.generation, child.pid, port, key))
        loaded = bytearray()
        pumping = asyncio.ensure_future(self._pump(child, log, process, loaded))
        exit_code = asyncio.ensure_future(child.wait())
        target = upstream.Target(f"http://{loopback(settings.LLAMA_HOST)}:{port}", key)
        if await self._wait_ready(process, target, exit_code):
            buffers = memory.parse_buffers(loaded.decode(errors="replace"))
            process.device_bytes = buffers.device if buffers else 0
            loaded.clear()
            self.feed(Ready(process.backend, process.generation, round(time.monotonic() - spawned, 3)))
        code = await exit_code
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pumping, 2.0)  # the rest of its output, unless a grandchild holds the pipe
        log.close()
        key_file.unlink(missing_ok=True)
        oom = code == -signal.SIGKILL and not process.terminated and memory.oom_kills() > kills_before
        del self.processes[process.backend]
        self.feed(Exited(process.backend, process.generation, code, oom, process.peak, "\n".join(process.tail)))

    async def _pump(
        self, child: asyncio.subprocess.Process, log: RotatingLog, process: Process, loaded: bytearray
    ) -> None:
        assert child.stdout is not None
        while line := await child.stdout.readline():
            log.write(line)
            process.tail.append(line.decode(errors="replace").rstrip())
            if len(loaded) < LOAD_OUTPUT_LIMIT and not process.device_bytes:
                loaded += line

    async def _wait_ready(self, process: Process, target: upstream.Target, exit_code: asyncio.Future) -> bool:
        """Ready means GET /health answers 200 (it answers 503 while the model loads); False if it exited or was
        told to stop first (the machine enforces the load's deadline)."""
        while not exit_code.done() and not process.terminated:
            with contextlib.suppress(upstream.UpstreamError):
                status, _ = await upstream.get(target, "/health", 2.0)
                if status == 200:
                    return True
            await asyncio.wait([exit_code], timeout=READY_POLL)
        return False

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(BaseException):
                await task


def loopback(host: str) -> str:
    loopback = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{loopback}]" if ":" in loopback else loopback
