"""Run everything on one machine: the model supervisor (which loads the small models on demand), then daphne;
Ctrl-C stops all of it."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway import ggufinfo, llama
from gateway.lifecycle import flags
from gateway.models import APIKey, ModelKind, Supervisor
from gateway.node.identity import node_name
from gateway.registry import register_model

SUPERVISOR_START_TIMEOUT = 60.0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = (
        "Start the model supervisor, the sampler and the gateway (daphne) in the foreground; models load on first "
        "request."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.GATEWAY_HOST)
        parser.add_argument("--port", type=int, default=settings.GATEWAY_PORT)

    def handle(self, *args: Any, **options: Any) -> None:
        self.ensure_admin()
        try:
            self.register_small_models()
        except llama.LlamaError as exc:
            raise CommandError(str(exc)) from exc
        except flags.FlagError as exc:
            raise CommandError(f"LLAMA_EXTRA_ARGS: {exc}") from None
        self.ensure_api_key()
        call_command("clearmetrics", stdout=self.stdout)

        # SIGTERM (systemd, kill) takes the same clean path as Ctrl-C.
        signal.signal(signal.SIGTERM, _interrupt)
        supervisor = sampler = daphne = None
        try:
            supervisor = self.start_supervisor()
            # The node's sampler: metrics, energy per request and admission by heat and power.
            sampler = subprocess.Popen([sys.executable, "manage.py", "monitor"], cwd=settings.BASE_DIR)
            self.note_chat_template()
            url = f"http://{options['host']}:{options['port']}"
            self.stdout.write(self.style.SUCCESS(f"gateway on {url} (admin: {url}/admin/); Ctrl-C stops everything"))
            self.stdout.write("models load on their first request (see /models/ in the dashboard) and unload when idle")
            daphne_args = ["-b", options["host"], "-p", str(options["port"]), "jetsonsite.asgi:application"]
            daphne = subprocess.Popen([sys.executable, "-m", "daphne", *daphne_args])
            daphne.wait()
        except KeyboardInterrupt:
            self.stdout.write("stopping…")
        finally:
            # daphne first (no new requests), then the supervisor, which stops every model it started.
            for process in (daphne, sampler, supervisor):
                if process and process.poll() is None:
                    process.terminate()
                    process.wait(timeout=settings.MODEL_STOP_GRACE + 15)

    def register_small_models(self) -> None:
        """The bundled small model as two managed models, chat and embeddings, loaded on demand."""
        gguf = str(llama.model_path())
        common = {"gguf_path": gguf, "ctx_size": settings.LLAMA_CTX_SIZE}
        register_model(
            settings.LLAMA_MODEL_ID, [], kind=ModelKind.CHAT,
            managed={**common, "parallel": settings.LLAMA_PARALLEL, "llama_args": settings.LLAMA_EXTRA_ARGS},
        )  # fmt: skip
        register_model(
            f"{settings.LLAMA_MODEL_ID}-embed", [], kind=ModelKind.EMBEDDING,
            managed={**common, "parallel": 1, "llama_args": f"--pooling mean {settings.LLAMA_EXTRA_ARGS}".strip()},
        )  # fmt: skip

    def start_supervisor(self) -> subprocess.Popen[bytes]:
        """`manage.py supervise`, once it has recorded where it listens (the gateway finds it there)."""
        process = subprocess.Popen([sys.executable, "manage.py", "supervise"], cwd=settings.BASE_DIR)
        deadline = time.monotonic() + SUPERVISOR_START_TIMEOUT
        while not Supervisor.objects.filter(node=node_name(), pid=process.pid).exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.terminate()
                raise CommandError(f"the model supervisor did not start (exit code {process.poll()}): see above")
            time.sleep(0.1)
        return process

    def note_chat_template(self) -> None:
        """Say so when the chat model's GGUF has no chat template: a new user would meet echoed <|im_end|> markers."""
        path = llama.model_path()
        try:
            if ggufinfo.has_chat_template(path):
                return
        except (OSError, ggufinfo.NotGGUF):
            return  # unreadable here: the supervisor will say so when it loads it
        self.stdout.write(
            self.style.WARNING(
                f"note: {path.name} has no chat template of its own (a base model): llama-server falls back to "
                "ChatML and chat answers echo <|im_end|> markers. Fine for trying the gateway; for real chat, run an "
                "instruct GGUF (LLAMA_MODEL_PATH=/path/to/instruct.gguf make run) or register a llama-server already "
                "serving one (python manage.py addmodel <id> --backend http://<host>:<port>)."
            )
        )

    def ensure_admin(self) -> None:
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser("admin", "", password)
        self.stdout.write(self.style.WARNING(f"created admin user 'admin' with password {password} (shown once)"))

    def ensure_api_key(self) -> None:
        if APIKey.objects.exists():
            return
        _, plaintext = APIKey.objects.create_key(name="first key")
        self.stdout.write(self.style.WARNING(f"created the first API key (shown once): {plaintext}"))
        self.stdout.write(
            f"try: curl http://localhost:{settings.GATEWAY_PORT}/v1/chat/completions "
            f'-H "Authorization: Bearer {plaintext}" -H "Content-Type: application/json" '
            f'-d \'{{"model": "{settings.LLAMA_MODEL_ID}", "messages": [{{"role": "user", "content": "Hello"}}]}}\''
        )
