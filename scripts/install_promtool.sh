#!/usr/bin/env bash
# Installs promtool, which tests/unit/monitoring uses to check and test the alert rules and the
# dashboard's queries: Debian's prometheus package ships it.
#
# Idempotent: does nothing when promtool is already on the PATH. Only promtool is used; the
# package's Prometheus server is not started (a container has no init to start it, and on a
# host with systemd it is stopped and disabled again right after the install).
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    echo "[promtool] installed: $(promtool --version 2>&1 | head -1)"
    exit 0
fi

INSTALL="apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus"
if [[ "$(id -u)" -ne 0 ]]; then
    echo "[promtool] promtool is missing; as root, run:" >&2
    echo "    $INSTALL" >&2
    exit 1
fi

echo "[promtool] installing Debian's prometheus package for its promtool..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
if ! command -v promtool >/dev/null 2>&1; then
    echo "[promtool] prometheus installed but promtool is not on the PATH" >&2
    exit 1
fi
echo "[promtool] installed: $(promtool --version 2>&1 | head -1)"
