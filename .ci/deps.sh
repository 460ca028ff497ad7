#!/usr/bin/env bash
# Installs what the tests need outside cargo (SPEC section 7: tests run
# against real servers and are never skipped because one is missing):
#   - mariadb-server: mariadbd + mariadb-install-db, started by tests/support
#     (MYSQK_TEST_SERVER=mariadb)
#   - mmdebstrap, and with it a Debian sid root holding mysql-server-core
#     (MySQL 9.7; bookworm's glibc is too old for it), run by chroot from
#     tests/support (MYSQK_TEST_SERVER=mysql). tests/support builds the root
#     itself when it is missing; building it here keeps that ~30 s (and its
#     network use) out of the first test binary.
#   - python3-aiosmtpd: the mail tests' SMTP server (plain, STARTTLS, TLS),
#     run under Debian's /usr/bin/python3 by tests/support/smtp.rs. Its test
#     CA and certificates are made in Rust (rcgen), so no openssl is needed.
set -euo pipefail

MYSQL_ROOT=${MYSQK_TEST_MYSQL_ROOT:-/var/cache/mysqk-test/mysql-sid-root}

have_mariadb() {
    { command -v mariadbd || [ -x /usr/sbin/mariadbd ]; } >/dev/null 2>&1 &&
        { command -v mariadb-install-db || [ -x /usr/bin/mariadb-install-db ]; } >/dev/null 2>&1
}

missing=()
have_mariadb || missing+=(mariadb-server)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || missing+=(python3-aiosmtpd)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "deps: installing ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    else
        echo "deps: ${missing[*]} missing; run as root:" >&2
        echo "    sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi
# The package's own service is not needed: tests start private servers.

if [ ! -x "$MYSQL_ROOT/usr/sbin/mysqld" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "deps: the MySQL sid root $MYSQL_ROOT is missing; building it (and running" >&2
        echo "    the MySQL tests, which chroot into it) needs root" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$MYSQL_ROOT")"
    # Same lock and build-then-rename as tests/support, so the two never race.
    (
        flock 9
        if [ ! -x "$MYSQL_ROOT/usr/sbin/mysqld" ]; then
            tmp="$MYSQL_ROOT.tmp-$$"
            rm -rf "$tmp"
            echo "deps: building the MySQL sid root at $MYSQL_ROOT (about 30 s, 500 MB)"
            mmdebstrap --variant=apt --aptopt='Acquire::Check-Valid-Until "false"' \
                --include=mysql-server-core,mysql-client-core sid "$tmp"
            mv -T "$tmp" "$MYSQL_ROOT"
        fi
    ) 9>"$MYSQL_ROOT.lock"
fi

echo "deps: ok ($(/usr/sbin/mariadbd --version 2>/dev/null || mariadbd --version))"
echo "deps: ok ($(chroot "$MYSQL_ROOT" /usr/sbin/mysqld --version))"
echo "deps: ok (aiosmtpd $(/usr/bin/python3 -c 'import aiosmtpd; print(aiosmtpd.__version__)'))"
