"""A pytest plugin loaded before Django's settings (`-p tests.environment`): the production-like test environment.

Tests run with DEBUG off, as production does; these are the values a production .env would give.
"""

from __future__ import annotations

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "x" * 50)
os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")
# Caches off: tests change keys and models and expect the next request to see it.
os.environ.setdefault("API_KEY_CACHE_SECONDS", "0")
os.environ.setdefault("REGISTRY_CACHE_SECONDS", "0")
