"""Create an API key; its plaintext is the last line printed, and is shown only this once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway.models import APIKey, LLMModel


class Command(BaseCommand):
    help = "Create an API key and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--models", default="", help="comma-separated model ids this key may use (default all)")
        parser.add_argument("--owner", help="username of the key's owner")
        parser.add_argument("--rpm", type=int, help="requests per minute")
        parser.add_argument("--tpm", type=int, help="tokens per minute")
        parser.add_argument("--concurrent", type=int, help="requests in flight at once")
        parser.add_argument("--scope-logs", action="store_true", help="may read request logs and usage")
        parser.add_argument("--scope-monitoring", action="store_true", help="may read system metrics")
        parser.add_argument("--scope-models", action="store_true", help="may see managed models and load/unload them")

    def handle(self, *args: Any, **options: Any) -> None:
        model_ids = [m.strip() for m in options["models"].split(",") if m.strip()]
        models = list(LLMModel.objects.filter(model_id__in=model_ids))
        missing = set(model_ids) - {m.model_id for m in models}
        if missing:
            raise CommandError(f"unknown model(s): {', '.join(sorted(missing))}")
        owner = None
        if options["owner"]:
            owner = get_user_model().objects.filter(username=options["owner"]).first()
            if owner is None:
                raise CommandError(f"no user named {options['owner']!r}")
        key, plaintext = APIKey.objects.create_key(
            name=options["name"],
            owner=owner,
            requests_per_minute=options["rpm"],
            tokens_per_minute=options["tpm"],
            max_concurrent=options["concurrent"],
            scope_logs=options["scope_logs"],
            scope_monitoring=options["scope_monitoring"],
            scope_models=options["scope_models"],
        )
        key.allowed_models.set(models)
        self.stdout.write(f"created API key {key.name!r} (prefix {key.prefix}); it is shown only once:")
        self.stdout.write(plaintext)
