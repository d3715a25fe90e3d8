"""Safe by default: production settings refuse weak configuration and pass `check --deploy`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", "HTTPS"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "jetsonsite.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_refuses_to_start_without_a_secret_key() -> None:
    result = _manage("check", ALLOWED_HOSTS="example.org", SECRET_KEY="")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_it_refuses_a_short_secret_key() -> None:
    result = _manage("check", ALLOWED_HOSTS="example.org", SECRET_KEY="short")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_it_refuses_to_start_without_allowed_hosts() -> None:
    result = _manage("check", SECRET_KEY="k" * 60, ALLOWED_HOSTS="")
    assert result.returncode != 0
    assert "ALLOWED_HOSTS must be set" in result.stderr


def test_it_starts_in_debug_without_configuration() -> None:
    result = _manage("check", DEBUG="true", SECRET_KEY="", ALLOWED_HOSTS="")
    assert result.returncode == 0, result.stderr


def test_check_deploy_is_clean_with_production_settings() -> None:
    secret = "q8Zr1vX0pLmN4sT7wY2bC5eH9jK3fG6dA0uI8oP1lQ4zR7xV2nM5cB9tE3yW6hJ"
    result = _manage("check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=secret,
                     ALLOWED_HOSTS="jetson.example.org", HTTPS="true")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_refuses_a_stale_bound_no_longer_than_the_samplers_interval() -> None:
    result = _manage("check", DEBUG="true", MONITOR_INTERVAL="5", ADMISSION_STALE_SECONDS="5")
    assert result.returncode != 0
    assert "ADMISSION_STALE_SECONDS must exceed both MONITOR_INTERVAL and ADMISSION_INTERVAL" in result.stderr
    # Left empty, it follows a slow sampler: three of its intervals.
    assert _manage("check", DEBUG="true", MONITOR_INTERVAL="5", ADMISSION_STALE_SECONDS="").returncode == 0
