#!/bin/sh
# Installs the servers that the hub cluster's tests and benchmarks start (scenarios/services.py): Debian's
# HAProxy (the load balancer in front of the hubs) and Debian's PostgreSQL 15 server binaries (the hubs'
# shared ledger), and fuse3 (fusermount3 and libfuse3, for the power-loss harness: scenarios/powercut_fs.py),
# from the distribution's packages. Idempotent, and installs only what is missing: does nothing when
# /usr/sbin/haproxy, /usr/lib/postgresql/15/bin/postgres and /usr/bin/fusermount3 are already there. It starts no
# server: the tests start throwaway ones of their own on loopback. CI runs it as root on a fresh Debian
# machine; on a developer machine without root it uses sudo if there is one (tests/apt_install.sh).
set -eu

MISSING=""
[ -x /usr/sbin/haproxy ] || MISSING="$MISSING haproxy"
[ -x /usr/lib/postgresql/15/bin/postgres ] || MISSING="$MISSING postgresql-15"
[ -x /usr/bin/fusermount3 ] || MISSING="$MISSING fuse3"

if [ -z "$MISSING" ]; then
    exit 0
fi

# shellcheck disable=SC2086  # $MISSING is a list of package names
sh "$(dirname "$0")/apt_install.sh" services_setup $MISSING
/usr/sbin/haproxy -v | head -n 1 >&2
/usr/lib/postgresql/15/bin/postgres --version >&2
