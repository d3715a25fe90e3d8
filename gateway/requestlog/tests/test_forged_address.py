"""The shipped systemd unit's daphne: a client cannot forge its address in the request log; a configured proxy can."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.models import APIKey
from gateway.tests.test_request_logging import row_for
from tests.live import ROOT, database_url, start_daphne, stop_process

UNIT = ROOT / "systemd" / "jetson-gateway.service"
INSTALLED_VENV = "/opt/jetson-gateway/.venv/"
FORGED = "6.6.6.6"


def unit_command(port: int) -> list[str]:
    """The unit's own ExecStart, with this checkout's virtualenv, the loopback address and `port` filled in."""
    lines = re.findall(r"^ExecStart=(.+)$", UNIT.read_text(), flags=re.MULTILINE)
    assert len(lines) == 1, f"{UNIT} should have exactly one ExecStart line, has {len(lines)}"
    argv = shlex.split(lines[0])
    assert argv[0] == f"{INSTALLED_VENV}bin/daphne", f"the unit no longer starts daphne from {INSTALLED_VENV}: {argv}"
    venv = Path(sys.executable).parent.parent
    values = {"${GATEWAY_HOST}": "127.0.0.1", "${GATEWAY_PORT}": str(port)}

    def fill(arg: str) -> str:
        return str(venv / arg.removeprefix(INSTALLED_VENV)) if arg.startswith(INSTALLED_VENV) else values.get(arg, arg)

    return [fill(arg) for arg in argv]


def serve_unit(trusted_proxies: str) -> tuple[subprocess.Popen[bytes], str]:
    env = {"DATABASE_URL": database_url(), "LOG_FLUSH_INTERVAL": "0.1", "TRUSTED_PROXIES": trusted_proxies}
    return start_daphne(env, command=unit_command)


@pytest.fixture
def unit_gateway(transactional_db: None) -> Iterator[str]:
    """The gateway as the unit runs it, with no proxy configured."""
    process, url = serve_unit("")
    yield url
    stop_process(process)


@pytest.fixture
def api_key(transactional_db: None) -> str:
    return APIKey.objects.create_key(name="forger")[1]


def requests_with(url: str, key: str, forwarded_for: str) -> list[httpx.Response]:
    """An authenticated request and a failed-authentication one, both claiming `forwarded_for` as the client."""
    headers = {"X-Forwarded-For": forwarded_for, "X-Real-IP": forwarded_for}
    ok = httpx.get(f"{url}/v1/models", headers={**headers, "Authorization": f"Bearer {key}"}, timeout=30)
    refused = httpx.get(f"{url}/v1/models", headers={**headers, "Authorization": "Bearer sk-jg-0.nope"}, timeout=30)
    assert (ok.status_code, refused.status_code) == (200, 401)
    return [ok, refused]


def test_it_logs_the_real_peer_whatever_x_forwarded_for_claims(unit_gateway: str, api_key: str) -> None:
    for response in requests_with(unit_gateway, api_key, FORGED):
        assert row_for(response).client_ip == "127.0.0.1"


def test_it_believes_x_forwarded_for_from_a_configured_proxy(api_key: str) -> None:
    process, url = serve_unit("127.0.0.1")
    try:
        rows = [row_for(response) for response in requests_with(url, api_key, f"203.0.113.9, {FORGED}")]
    finally:
        stop_process(process)
    # The proxy (127.0.0.1) appended 6.6.6.6, the address it saw; what that client wrote further left is not believed.
    assert [row.client_ip for row in rows] == [FORGED, FORGED]
