#!/bin/sh
# Installs what the browser tests (tests/hub/test_fleet_page_browser.py) drive: Debian's Chromium and its
# matching chromedriver, from the distribution's packages (never a downloaded browser). Idempotent: does
# nothing when /usr/bin/chromedriver is already there. CI runs it as root on a fresh Debian machine; on a
# developer machine without root it uses sudo if there is one.
set -eu

if [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/chromium ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "browser_setup: /usr/bin/chromedriver is missing and this is not root; run as root:" >&2
    echo "  apt-get update && apt-get install -y chromium chromium-driver" >&2
    exit 1
fi

echo "browser_setup: installing chromium and chromium-driver with apt-get" >&2
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver
/usr/bin/chromium --version >&2
