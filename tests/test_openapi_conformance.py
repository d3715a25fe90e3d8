"""The API does what its OpenAPI document says: schemathesis (tests/conformance.py) for about a minute against
daphne over the test database, with every finding printed when it fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.llama import free_port
from gateway.models import APIKey
from gateway.registry import register_model
from monitor.sampler import Sampler
from tests import conformance
from tests.fake_llama import FakeLlama
from tests.live import database_url, start_daphne, stop_process

# Bounded by examples, so that a busy machine tests as much (and the same requests) as an idle one: about a
# minute here; the time limit only stops a run gone wrong. Stateful runs are left out: the only link between
# operations is /v1/models → /v1/models/{model_id}.
OPTIONS = ("--phases", "examples,coverage,fuzzing", "--max-examples", "20")


@pytest.fixture
def gateway(transactional_db: None) -> Iterator[tuple[str, str]]:
    """(base URL, key): the conformance models on an instant fake backend, a key with the logs and monitoring
    scopes, one real sample of this machine, and daphne serving them."""
    fake = FakeLlama(free_port(), tokens=4, record=False).start_in_thread()
    for model, kind in conformance.MODELS.items():
        register_model(model, [fake.url], kind=kind, audio=model in conformance.AUDIO)
    _, key = APIKey.objects.create_key(name="conformance", scope_logs=True, scope_monitoring=True)
    sampler = Sampler()
    sampler.store(sampler.collect_system())
    env = {"DATABASE_URL": database_url(), "LOG_FLUSH_INTERVAL": "0.1", **conformance.environment()}
    process, url = start_daphne(env)
    yield url, key
    stop_process(process)
    fake.stop()


def test_it_answers_as_its_openapi_document_says(gateway: tuple[str, str], tmp_path: Path) -> None:
    url, key = gateway
    result = conformance.run(url, key, tmp_path, *OPTIONS)
    assert result.returncode == 0, f"schemathesis: the API and its document disagree\n{result.stdout}\n{result.stderr}"
