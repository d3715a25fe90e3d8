"""The web process does not carry what only the supervisor needs: gguf (and numpy with it, about 25 MB of resident
memory) is imported when a GGUF header is first read, not when daphne loads the application."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.live import ROOT

PROBE = """
import sys
import django
django.setup()
import jetsonsite.asgi  # what daphne loads
print(sorted(name for name in ("gguf", "numpy") if name in sys.modules))
"""


def test_the_application_loads_without_gguf_or_numpy() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "jetsonsite.settings", "DEBUG": "true"}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
