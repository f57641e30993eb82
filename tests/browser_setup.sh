#!/bin/sh
# Installs what the browser tests (tests/hub/test_fleet_page_browser.py) drive: Debian's Chromium and its
# matching chromedriver, from the distribution's packages (never a downloaded browser). Idempotent: does
# nothing when /usr/bin/chromedriver is already there. CI runs it as root on a fresh Debian machine; on a
# developer machine without root it uses sudo if there is one (tests/apt_install.sh).
set -eu

if [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/chromium ]; then
    exit 0
fi

sh "$(dirname "$0")/apt_install.sh" browser_setup chromium chromium-driver
/usr/bin/chromium --version >&2
