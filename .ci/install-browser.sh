#!/usr/bin/env bash
# Install what the dashboard's browser tests (tests/ui/test_browser.py) need:
# Debian's chromium, fonts (Latin + CJK, so run names in Chinese render in the
# screenshots), and the playwright Python package that drives it.
# Never runs `playwright install`: the tests launch /usr/bin/chromium directly.
#
# Usage: .ci/install-browser.sh [PYTHON]     (default: .venv/bin/python, else python3)
set -euo pipefail

PYTHON="${1:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then SUDO="sudo"; fi

if [[ ! -x /usr/bin/chromium ]]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core fonts-wqy-microhei >/dev/null
fi

if ! "$PYTHON" -c "import playwright.sync_api" 2>/dev/null; then
  "$PYTHON" -m pip install -q "playwright>=1.40"
fi

/usr/bin/chromium --version 2>/dev/null
"$PYTHON" -c "import playwright, importlib.metadata as m; print('playwright', m.version('playwright'))"
