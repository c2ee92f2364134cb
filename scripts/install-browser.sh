#!/usr/bin/env bash
# Install Debian's Chromium (and ChromeDriver) for the browser tests, if missing. Idempotent.
#   scripts/install-browser.sh && .venv/bin/python -m pytest -m browser
# The tests drive /usr/bin/chromium through Playwright's Python package (executable_path);
# never `playwright install`: that downloads a browser build, which this project does not use.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    echo "install-browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install-browser: no apt-get here; install Chromium so that /usr/bin/chromium exists" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-browser: need root (or sudo) for apt-get" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
echo "install-browser: $(/usr/bin/chromium --version 2>/dev/null) installed"
