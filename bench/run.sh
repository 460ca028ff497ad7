#!/usr/bin/env bash
# `make bench`: mysqk against pt-kill on a throwaway MariaDB (examples/bench/
# does the work; this script provides what it needs).
#   - installs percona-toolkit and mariadb-server when missing (as root)
#   - builds the release binary and the bench driver
#   - raises the open-files limit (the storms hold thousands of sockets,
#     and mariadbd inherits the limit)
# Extra arguments go to the driver, e.g. `bench/run.sh --only S1,S5 --rounds 5`
# or `make bench BENCH_ARGS='--only S1'`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
command -v pt-kill >/dev/null 2>&1 || missing+=(percona-toolkit)
{ command -v mariadbd || [ -x /usr/sbin/mariadbd ]; } >/dev/null 2>&1 &&
    { command -v mariadb-install-db || [ -x /usr/bin/mariadb-install-db ]; } >/dev/null 2>&1 ||
    missing+=(mariadb-server)
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
