"""Create or update a model in the registry, with its backends (idempotent, for scripts)."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import URLValidator

from gateway.models import ModelKind, PromptFormat
from gateway.registry import register_model


class Command(BaseCommand):
    help = "Create or update a model and set its backends."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model_id")
        parser.add_argument("--kind", choices=ModelKind.values, default=ModelKind.CHAT)
        parser.add_argument("--backend", action="append", required=True, help="llama-server base URL; repeatable")
        parser.add_argument("--prompt-format", choices=PromptFormat.values, default=PromptFormat.SERVER)
        parser.add_argument("--alias", action="append", default=[], help="another id clients may send; repeatable")
        parser.add_argument("--description", default="")
        parser.add_argument("--max-tokens-cap", type=int)
        parser.add_argument("--context-length", type=int)
        parser.add_argument("--timeout", type=float, default=120.0, help="request timeout in seconds")
        parser.add_argument("--defaults", default="{}", help='default sampling params as JSON, e.g. {"top_k": 40}')
        parser.add_argument("--disabled", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
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
        model, created = register_model(
            options["model_id"],
            options["backend"],
            kind=options["kind"],
            prompt_format=options["prompt_format"],
            aliases=options["alias"],
            description=options["description"],
            max_tokens_cap=options["max_tokens_cap"],
            context_length=options["context_length"],
            request_timeout=options["timeout"],
            default_params=defaults,
            enabled=not options["disabled"],
        )
        verb = "created" if created else "updated"
        self.stdout.write(f"{verb} model {model.model_id} ({model.kind}) with {model.backends.count()} backend(s)")
