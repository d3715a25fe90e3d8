"""Make a local llama-server and the small model available, and print their paths."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from gateway import llama


class Command(BaseCommand):
    help = "Install (if needed) llama-server and the small GGUF model; print their paths."

    def handle(self, *args: object, **options: object) -> None:
        try:
            binary = llama.server_binary(install=True)
            model = llama.model_path(install=True)
        except llama.LlamaError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"llama-server: {binary}")
        self.stdout.write(f"model: {model}")
