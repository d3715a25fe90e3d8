#!/usr/bin/env bash
# Debian's redis-server for the tests that stop and restart a private Redis (tests/redis_server.py).
set -euo pipefail
if command -v redis-server >/dev/null; then
    exit 0
fi
echo "==> installing Debian's redis-server for the Redis outage tests"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q redis-server
