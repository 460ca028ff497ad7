#!/usr/bin/env bash
# Installs what the tests need outside cargo (SPEC section 7: tests run
# against real servers and are never skipped because one is missing):
#   - mariadb-server: mariadbd + mariadb-install-db, started by tests/support
#   - aiosmtpd: a real SMTP server on 127.0.0.1 for the mail tests
set -euo pipefail

have_mariadb() {
    { command -v mariadbd || [ -x /usr/sbin/mariadbd ]; } >/dev/null 2>&1 &&
        { command -v mariadb-install-db || [ -x /usr/bin/mariadb-install-db ]; } >/dev/null 2>&1
}

if ! have_mariadb; then
    if [ "$(id -u)" = 0 ]; then
        echo "deps: installing mariadb-server"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y mariadb-server
    else
        echo "deps: mariadb-server is missing; run as root:" >&2
        echo "    sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y mariadb-server" >&2
        exit 1
    fi
fi
# The package's own service is not needed: tests start private servers.

if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
    echo "deps: installing aiosmtpd for $(command -v python3)"
    # A pyenv/venv python takes a plain pip install; Debian's own python3
    # refuses it (PEP 668), where the distro package is the way.
    python3 -m pip install --quiet aiosmtpd ||
        { [ "$(id -u)" = 0 ] && apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y python3-aiosmtpd; } ||
        python3 -m pip install --quiet --user --break-system-packages aiosmtpd
    python3 -c 'import aiosmtpd' || { echo "deps: aiosmtpd still not importable by python3" >&2; exit 1; }
fi
echo "deps: ok ($(/usr/sbin/mariadbd --version 2>/dev/null || mariadbd --version))"
