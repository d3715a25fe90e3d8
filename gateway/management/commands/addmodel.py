"""Create or update a model in the registry, with its backends (idempotent, for scripts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import URLValidator

from gateway.lifecycle import flags
from gateway.models import GENERATING_KINDS, ModelKind, PromptFormat
from gateway.registry import register_model


class Command(BaseCommand):
    help = (
        "Create or update a model and set its backends: external llama-servers (--backend URL) and/or one started "
        "on demand by this node's supervisor (--gguf PATH)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model_id")
        parser.add_argument("--kind", choices=ModelKind.values, default=ModelKind.CHAT)
        parser.add_argument(
            "--audio", action="store_true",
            help="accepts audio: serves /v1/audio/transcriptions (a chat or vision model with an audio --mmproj)",
        )  # fmt: skip
        parser.add_argument("--backend", action="append", default=[], help="llama-server base URL; repeatable")
        parser.add_argument("--prompt-format", choices=PromptFormat.values, default=PromptFormat.SERVER)
        parser.add_argument("--alias", action="append", default=[], help="another id clients may send; repeatable")
        parser.add_argument("--description", default="")
        parser.add_argument("--max-tokens-cap", type=int)
        parser.add_argument("--context-length", type=int)
        parser.add_argument("--timeout", type=float, default=120.0, help="request timeout in seconds")
        parser.add_argument("--defaults", default="{}", help='default sampling params as JSON, e.g. {"top_k": 40}')
        parser.add_argument("--disabled", action="store_true")
        managed = parser.add_argument_group("managed (started on demand by `manage.py supervise`)")
        managed.add_argument("--gguf", help="the GGUF file: makes the model managed on this node")
        managed.add_argument("--mmproj", default="", help="vision projector GGUF")
        managed.add_argument("--ctx-size", type=int, default=4096)
        managed.add_argument("--parallel", type=int, default=2, help="slots (requests served at once)")
        managed.add_argument("--gpu-layers", type=int, help="--n-gpu-layers (99 = all); default llama-server's")
        managed.add_argument(
            "--ttl", type=int, help="seconds idle before it is stopped (0 = never; default MODEL_IDLE_TTL)"
        )
        managed.add_argument("--pin", action="store_true", help="loaded when the supervisor starts, never evicted")
        managed.add_argument(
            "--llama-args", default="", help='extra llama-server flags (tuning only), e.g. "--pooling last"'
        )
        managed.add_argument(
            "--cache-ram-mb", type=int, help="MiB for its prompt cache (0 = off; default MODEL_CACHE_RAM_MB)"
        )
        managed.add_argument("--node", default="", help="node whose supervisor runs it (default this machine)")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["backend"] and not options["gguf"]:
            raise CommandError("give --backend URL (an external llama-server) and/or --gguf PATH (a managed one)")
        if options["audio"] and options["kind"] not in GENERATING_KINDS:
            raise CommandError(
                f"--audio: only a chat or vision model can accept audio, not this {options['kind']} model"
            )
        for url in options["backend"]:
            try:
                URLValidator(schemes=["http", "https"])(url)
            except ValidationError:
                raise CommandError(f"--backend {url!r} is not an http(s) URL") from None
        try:
            defaults = json.loads(options["defaults"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--defaults is not valid JSON: {exc}") from None
        if not isinstance(defaults, dict):
            raise CommandError("--defaults must be a JSON object")
        try:
            model, created = register_model(
                options["model_id"],
                options["backend"],
                managed=self.managed(options),
                kind=options["kind"],
                audio=options["audio"],
                prompt_format=options["prompt_format"],
                aliases=options["alias"],
                description=options["description"],
                max_tokens_cap=options["max_tokens_cap"],
                context_length=options["context_length"],
                request_timeout=options["timeout"],
                default_params=defaults,
                enabled=not options["disabled"],
            )
        except flags.FlagError as exc:
            raise CommandError(f"--llama-args: {exc}") from None
        verb = "created" if created else "updated"
        managed = " (managed)" if options["gguf"] else ""
        kind = model.kind + (", accepts audio" if model.audio else "")
        self.stdout.write(f"{verb} model {model.model_id} ({kind}) with {model.backends.count()} backend(s){managed}")

    def managed(self, options: dict[str, Any]) -> dict[str, Any] | None:
        if not options["gguf"]:
            return None
        for flag in ("gguf", "mmproj"):
            if options[flag] and not Path(options[flag]).is_file():
                raise CommandError(f"--{flag} {options[flag]!r} is not a file")
        if options["ctx_size"] < 1 or options["parallel"] < 1:
            raise CommandError("--ctx-size and --parallel must be positive")
        if any(options[name] is not None and options[name] < 0 for name in ("ttl", "cache_ram_mb")):
            raise CommandError("--ttl and --cache-ram-mb must not be negative")
        return {
            "gguf_path": str(Path(options["gguf"]).resolve()),
            "mmproj_path": str(Path(options["mmproj"]).resolve()) if options["mmproj"] else "",
            "ctx_size": options["ctx_size"],
            "parallel": options["parallel"],
            "gpu_layers": options["gpu_layers"],
            "idle_ttl": options["ttl"],
            "pinned": options["pin"],
            "llama_args": options["llama_args"],
            "cache_ram_mb": options["cache_ram_mb"],
            "node": options["node"],
        }
