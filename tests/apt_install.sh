#!/bin/sh
# apt_install.sh WHO PACKAGE...: installs Debian packages for one of the tests/*_setup.sh scripts (WHO names it
# in messages). As root it runs apt-get itself; otherwise through sudo if there is one, or it says what to run.
set -eu

WHO="$1"
shift

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "$WHO: $* missing and this is not root; run as root:" >&2
    echo "  apt-get update && apt-get install -y $*" >&2
    exit 1
fi

echo "$WHO: installing $* with apt-get" >&2
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "$@"
