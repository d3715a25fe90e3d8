#!/usr/bin/env bash
# Debian's Chromium for the browser tests (a test tool's own browser download cannot work offline).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
echo "==> installing Debian's chromium for the browser tests"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
