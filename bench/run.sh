#!/usr/bin/env bash
# `make bench`: mysqk against pt-kill on throwaway servers, MariaDB and
# MySQL 9.7 (examples/bench/ does the work; this script provides what it
# needs).
#   - installs percona-toolkit, mariadb-server and mmdebstrap when missing
#     (as root). MySQL runs from the Debian sid root tests/support builds
#     with mmdebstrap (cached in /var/cache/mysqk-test/mysql-sid-root) and
#     starts by chroot, so `--server mysql|both` needs root.
#   - builds the release binary and the bench driver
#   - raises the open-files limit (the storms hold thousands of sockets,
#     and the servers inherit the limit)
# Extra arguments go to the driver, e.g. `bench/run.sh --only S1,S5 --rounds 5`
# or `make bench BENCH_ARGS='--only S1 --server mysql'`. `--server
# mariadb|mysql|both` (default both) picks the servers; S1-S3 run on both,
# S4 and S5 on MariaDB only.
#
# bench/results/latest.md has one section per scenario and server, each
# saying when and with what it was measured. A run replaces the sections it
# measured and keeps the others, so `--only S6` refreshes S6's rows and
# leaves every other row as it was.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
command -v pt-kill >/dev/null 2>&1 || missing+=(percona-toolkit)
{ command -v mariadbd || [ -x /usr/sbin/mariadbd ]; } >/dev/null 2>&1 &&
    { command -v mariadb-install-db || [ -x /usr/bin/mariadb-install-db ]; } >/dev/null 2>&1 ||
    missing+=(mariadb-server)
# mmdebstrap only builds the MySQL root, when a run needs MySQL and the root
# is not there yet.
mysql_root=${MYSQK_TEST_MYSQL_ROOT:-/var/cache/mysqk-test/mysql-sid-root}
case " $* " in
*" --server mariadb "*) ;;
*) [ -x "$mysql_root/usr/sbin/mysqld" ] || command -v mmdebstrap >/dev/null 2>&1 ||
    missing+=(mmdebstrap) ;;
esac
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "bench: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        echo "bench: missing ${missing[*]}; run as root:" >&2
        echo "    sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

# 2000-3000 client sockets in the driver, as many server-side threads and
# sockets in mariadbd: both need far more than the usual 1024.
want=20000
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
    ulimit -Hn "$want" 2>/dev/null || want=$hard
fi
ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt 8000 ]; then
    echo "bench: open-files limit is $(ulimit -n); the storms need ~8000 (run as root or raise the hard limit)" >&2
    exit 1
fi

${CARGO:-cargo} build --release --bins --examples
exec target/release/examples/bench --mysqk target/release/mysqk "$@"
