#!/usr/bin/env bash
# Installs the browser used by tests/integration/test_blotter_browser.py: Debian's chromium.
#
# Idempotent: does nothing when /usr/bin/chromium is already there. Playwright drives this
# browser through executable_path; 'playwright install' (which downloads its own build) is not
# needed and not used.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
INSTALL="apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium"

if [[ -x "$CHROMIUM" ]]; then
    echo "[browser] $CHROMIUM is installed: $("$CHROMIUM" --version 2>/dev/null || echo 'version unknown')"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    echo "[browser] $CHROMIUM is missing; as root, run:" >&2
    echo "    $INSTALL" >&2
    exit 1
fi

echo "[browser] installing Debian's chromium package (this takes a while)..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
if [[ ! -x "$CHROMIUM" ]]; then
    echo "[browser] chromium installed but $CHROMIUM is not there" >&2
    exit 1
fi
echo "[browser] installed: $("$CHROMIUM" --version 2>/dev/null || echo 'version unknown')"
