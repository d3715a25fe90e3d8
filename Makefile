# Two commands on a fresh machine: `make run` (the gateway on embedded defaults) and `make test` (the suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test pytest lint setup setup-test setup-bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@echo "==> creating virtualenv in $(VENV) and installing Python packages"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements-dev.txt
	touch $@

# A first .env with a random SECRET_KEY: the app refuses to start without one outside DEBUG.
.env:
	@echo "==> writing .env with a new SECRET_KEY"
	@$(PYTHON) -c "import secrets; print('SECRET_KEY=' + secrets.token_urlsafe(50)); print('ALLOWED_HOSTS=localhost,127.0.0.1,[::1]')" > .env

setup: $(VENV)/.installed .env
	@echo "==> preparing llama-server and the small model (the first build takes about 5 minutes)"
	$(PY) manage.py setupllama
	$(PY) manage.py migrate --no-input
	$(PY) manage.py collectstatic --no-input -v 0

run: setup
	$(PY) manage.py runlocal

setup-test: $(VENV)/.installed
	@echo "==> preparing llama-server and the small model (the first build takes about 5 minutes)"
	DEBUG=true $(PY) manage.py setupllama
	DEBUG=true $(PY) manage.py collectstatic --no-input -v 0
	@bash scripts/install-browser.sh
	@bash scripts/install-redis.sh

# Debian's wrk, the load generator of bench/upstream_client.py.
setup-bench:
	@command -v wrk >/dev/null || { echo "==> installing Debian's wrk for the benchmarks"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q wrk; }

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

pytest: setup-test
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint pytest

clean:
	rm -rf $(VENV) staticfiles var/test-db-*.sqlite3* test-artifacts
