"""Run everything on one machine: the local llama-servers, then daphne; Ctrl-C stops all of it."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway import ggufinfo, llama
from gateway.models import APIKey, ModelKind
from gateway.registry import register_model


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Start the local llama-server(s) and the gateway (daphne) in the foreground."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.GATEWAY_HOST)
        parser.add_argument("--port", type=int, default=settings.GATEWAY_PORT)

    def handle(self, *args: Any, **options: Any) -> None:
        self.ensure_admin()
        servers = llama.configured_servers()
        chat, embed = servers
        register_model(settings.LLAMA_MODEL_ID, [chat.url], kind=ModelKind.CHAT)
        register_model(f"{settings.LLAMA_MODEL_ID}-embed", [embed.url], kind=ModelKind.EMBEDDING)
        self.ensure_api_key()
        call_command("clearmetrics", stdout=self.stdout)

        # SIGTERM (systemd, kill) takes the same clean path as Ctrl-C.
        signal.signal(signal.SIGTERM, _interrupt)
        started: list[llama.LlamaServer] = []
        daphne = None
        try:
            for server in servers:
                role = "embeddings" if server.embeddings else "chat"
                self.stdout.write(f"starting llama-server on {server.url} ({role})…")
                started.append(server.start(log_file=settings.VAR_DIR / f"llama-{server.port}.log"))
            self.note_chat_template()
            url = f"http://{options['host']}:{options['port']}"
            self.stdout.write(self.style.SUCCESS(f"gateway on {url} (admin: {url}/admin/); Ctrl-C stops everything"))
            daphne_args = ["-b", options["host"], "-p", str(options["port"]), "jetsonsite.asgi:application"]
            daphne = subprocess.Popen([sys.executable, "-m", "daphne", *daphne_args])
            daphne.wait()
        except KeyboardInterrupt:
            self.stdout.write("stopping…")
        except llama.LlamaError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if daphne and daphne.poll() is None:
                daphne.terminate()
                daphne.wait(timeout=15)
            for server in started:
                server.stop()

    def note_chat_template(self) -> None:
        """Say so when the chat model's GGUF has no chat template: a new user would meet echoed <|im_end|> markers."""
        path = llama.model_path()
        try:
            if ggufinfo.has_chat_template(path):
                return
        except (OSError, ggufinfo.NotGGUF):
            return  # llama-server has just loaded it; nothing useful to add if this process cannot read it
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
