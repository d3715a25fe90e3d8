"""A pytest plugin loaded before Django's settings (`-p tests.environment`): the production-like test environment.

Tests run with DEBUG off, as production does; these are the values a production .env would give.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "x" * 50)
os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")
# Caches off: tests change keys and models and expect the next request to see it.
os.environ.setdefault("API_KEY_CACHE_SECONDS", "0")
os.environ.setdefault("REGISTRY_CACHE_SECONDS", "0")
# The request metrics of this process (in-process requests) go to a directory of its own, removed at exit; each live
# server gets its own too (tests.live.start_daphne).
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gateway-test-metrics-")
    atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
