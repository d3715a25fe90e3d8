"""Schemathesis against a live gateway: does the API do what its OpenAPI document (monitor/operations/openapi.py) says?

Every check schemathesis has: no 5xx, only documented statuses, content types, headers and response schemas,
schema-valid requests accepted, schema-violating ones refused, 405 (with Allow) for undocumented methods, and
401 without the key. Half the generated requests name a registered model (on an instant fake backend), so the
whole request path runs, streams included; the key has the logs and monitoring scopes.

tests/test_openapi_conformance.py runs it for about a minute in the suite. Alone, over a throwaway installation
(SQLite, fake backend, daphne): `python -m tests.conformance --seconds 180`.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
# Registered on the fake backend by whoever starts the gateway; generated requests name them half the time.
# A vision model takes text and images alike: image parts are refused (400) for other kinds, whatever the document;
# it accepts audio too, so that the chat models serve transcriptions.
MODELS = {"conformance-vision": "vision", "conformance-embed": "embedding", "conformance-rerank": "rerank"}
AUDIO = ("conformance-vision",)
SEED = 1
# The gateway's settings for the run, given to daphne as its environment and to the document built here: small
# limits keep the largest valid image URL and the 413 within reach of generated requests.
SETTINGS = {"MAX_IMAGE_BYTES": 4096, "MAX_REQUEST_BYTES": 2**20, "IMAGE_URL_ALLOWED_HOSTS": ["images.example.org"]}


def environment() -> dict[str, str]:
    """SETTINGS as environment variables, for the gateway under test."""
    return {name: ",".join(value) if isinstance(value, list) else str(value) for name, value in SETTINGS.items()}


def _cursor() -> str:
    """A cursor as the logs API's `next` link carries it (rows older than now), for requests that page."""
    from django.utils import timezone

    return base64.b64encode(urlencode({"p": str(timezone.now())}).encode()).decode()


def config() -> str:
    """schemathesis.toml: where generated values come from, and what no OpenAPI document can say."""
    from django.utils import timezone

    now = timezone.now()
    chat = json.dumps([model for model, kind in MODELS.items() if kind == "vision"])
    embedding = json.dumps([model for model, kind in MODELS.items() if kind == "embedding"])
    rerank = json.dumps([model for model, kind in MODELS.items() if kind == "rerank"])
    return f"""
[dictionaries.models]
values = {json.dumps(list(MODELS))}

[dictionaries.chat-models]
values = {chat}

[dictionaries.embedding-models]
values = {embedding}

# A cursor is an opaque token: only one the API gave out means anything (any other is a 400).
[dictionaries.cursors]
values = ["{_cursor()}"]

[parameters]
"path.model_id" = {{ dictionary = "models", probability = 0.5 }}
"body.model" = {{ dictionary = "chat-models", probability = 0.5 }}
"query.cursor" = {{ dictionary = "cursors", probability = 1.0 }}

[dictionaries.rerank-models]
values = {rerank}

[[operations]]
include-name = "POST /v1/embeddings"
parameters = {{ "body.model" = {{ dictionary = "embedding-models", probability = 0.5 }} }}

[[operations]]
include-name = "POST /v1/rerank"
parameters = {{ "body.model" = {{ dictionary = "rerank-models", probability = 0.5 }} }}

# A string of the cursor's pattern that no link gave out is a 400 (the document says so; no schema can tell).
[[operations]]
include-name = "GET /api/logs"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404"]

# `since` must come before `until`, and not too far: a 400 no OpenAPI document can announce for a value alone.
# Most requests ask for the last two days, so that the aggregates are computed too.
[[operations]]
include-name = "GET /api/usage"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404"]
parameters = {{ "query.since" = {{ dictionary = "two-days-ago", probability = 0.75 }}, "query.until" = {{ dictionary = "now", probability = 0.75 }} }}

[dictionaries.two-days-ago]
values = ["{(now - timedelta(days=2)).isoformat()}"]

[dictionaries.now]
values = ["{now.isoformat()}"]
"""


def run(base_url: str, api_key: str, workdir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Write the document and the configuration into `workdir` and run `st run` on them, with `options` (the
    phases, --max-examples, --max-time) after the fixed ones: the seed, every check, the key."""
    from django.test import override_settings

    from monitor.operations import openapi

    document = workdir / "openapi.json"
    with override_settings(**SETTINGS):
        document.write_text(json.dumps(openapi.document(base_url)))
    settings = workdir / "schemathesis.toml"
    settings.write_text(config())
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(settings), "run", str(document),
        "--url", base_url, "--header", f"Authorization: Bearer {api_key}", "--checks", "all",
        "--seed", str(SEED), "--workers", "1", "--request-timeout", "10", "--generation-database", "none",
        "--no-color", *options,
    ]  # fmt: skip
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=1800)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=180, help="schemathesis's time budget")
    parser.add_argument("--phases", default="examples,coverage,fuzzing,stateful", help="schemathesis's phases")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.common import Bench

    with Bench() as bench:
        fake = bench.start_fake(tokens=4)
        for model, kind in MODELS.items():
            bench.manage("addmodel", model, "--backend", fake, "--kind", kind, *(["--audio"] if model in AUDIO else []))
        key = bench.manage("createapikey", "conformance", "--scope-logs", "--scope-monitoring").strip().split()[-1]
        bench.manage("monitor", "--once")
        url = bench.start_gateway(LOG_ENABLED="true", **environment())
        import django

        django.setup()
        result = run(url, key, bench.tmp, "--max-time", str(args.seconds), "--phases", args.phases)
        print(result.stdout, result.stderr, sep="\n")
        sys.exit(result.returncode)


if __name__ == "__main__":
    main()
