#!/usr/bin/env bash
# Installs what the tests need outside cargo (SPEC section 7: tests run
# against real servers and are never skipped because one is missing):
#   - mariadb-server: mariadbd + mariadb-install-db, started by tests/support
# The mail tests need no package: their SMTP server is tests/support/smtp.rs.
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

echo "deps: ok ($(/usr/sbin/mariadbd --version 2>/dev/null || mariadbd --version))"
