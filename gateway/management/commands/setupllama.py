"""Make a local llama-server and the small model available, and print their paths."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from gateway import llama
from gateway.management.install import installing


class Command(BaseCommand):
    help = "Install (if needed) llama-server and the small GGUF model; print their paths."

    def handle(self, *args: object, **options: object) -> None:
        try:
            binary = installing(llama.server_binary)
            model = installing(llama.model_path)
        except llama.LlamaError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"llama-server: {binary}")
        self.stdout.write(f"model: {model}")
