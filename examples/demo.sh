#!/usr/bin/env bash
# `make demo`: a throwaway MariaDB under ./.demo, a storm of connections from a
# non-SUPER user (idle ones plus one runaway `SELECT SLEEP(600)`), then one
# `mysqk kill` pass that kills the runaway through app1's own session and
# leaves the idle connections alone. Everything is torn down on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DEMO=$ROOT/.demo
MYSQK=$ROOT/target/debug/mysqk
STORM=$ROOT/target/debug/examples/storm

find_bin() { command -v "$1" 2>/dev/null || { for d in /usr/sbin /usr/bin /usr/local/sbin; do [ -x "$d/$1" ] && { echo "$d/$1"; return; }; done; return 1; }; }
MARIADBD=$(find_bin mariadbd) || { echo "demo: mariadbd not found: run make deps" >&2; exit 1; }
INSTALL_DB=$(find_bin mariadb-install-db) || { echo "demo: mariadb-install-db not found: run make deps" >&2; exit 1; }
CLIENT=$(find_bin mariadb) || CLIENT=$(find_bin mysql)
for f in "$MYSQK" "$STORM"; do
    [ -x "$f" ] || { echo "demo: $f missing: run 'cargo build --bins --examples' (make demo does)" >&2; exit 1; }
done

# mariadbd refuses to run as root unless told to.
USER_ARG=()
[ "$(id -u)" = 0 ] && USER_ARG=(--user=root)

rm -rf "$DEMO"
mkdir -p "$DEMO"
# A unix socket path must fit in 108 bytes; fall back to /tmp for deep checkouts.
SOCK=$DEMO/s.sock
if [ ${#SOCK} -gt 100 ]; then SOCK=$(mktemp -d /tmp/mysqk-demo.XXXXXX)/s.sock; fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

SERVER_PID=
STORM_PID=
cleanup() {
    set +e
    [ -n "$STORM_PID" ] && kill "$STORM_PID" 2>/dev/null && wait "$STORM_PID" 2>/dev/null
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    [ "$SOCK" != "$DEMO/s.sock" ] && rm -rf "$(dirname "$SOCK")"
    rm -rf "$DEMO"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
sql() { "$CLIENT" --no-defaults --socket="$SOCK" -uroot "$@"; }

INNODB=(--innodb-buffer-pool-size=32M --innodb-log-file-size=8M --innodb-data-file-path=ibdata1:12M:autoextend)

step "starting a throwaway MariaDB on 127.0.0.1:$PORT (datadir $DEMO/data)"
"$INSTALL_DB" --no-defaults "${USER_ARG[@]}" --datadir="$DEMO/data" \
    --auth-root-authentication-method=normal --skip-test-db "${INNODB[@]}" >"$DEMO/install.log" 2>&1 ||
    { cat "$DEMO/install.log"; exit 1; }
"$MARIADBD" --no-defaults "${USER_ARG[@]}" --datadir="$DEMO/data" --socket="$SOCK" \
    --port="$PORT" --bind-address=127.0.0.1 --skip-name-resolve --skip-log-bin \
    --pid-file="$DEMO/mariadbd.pid" --log-error="$DEMO/error.log" "${INNODB[@]}" \
    >"$DEMO/mariadbd.out" 2>&1 &
SERVER_PID=$!
for i in $(seq 600); do
    sql -e 'SELECT 1' >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "demo: mariadbd died:"; tail -20 "$DEMO/error.log"; exit 1; }
    [ "$i" = 600 ] && { echo "demo: mariadbd not ready after 60 s:"; tail -20 "$DEMO/error.log"; exit 1; }
    sleep 0.1
done

step "creating app1 (ALL on demo.*, no SUPER) and monitor (PROCESS only)"
sql <<'SQL'
CREATE DATABASE demo;
CREATE USER 'app1'@'%' IDENTIFIED BY 'app1-pw';
GRANT ALL PRIVILEGES ON demo.* TO 'app1'@'%';
CREATE USER 'monitor'@'%' IDENTIFIED BY 'monitor-pw';
GRANT PROCESS ON *.* TO 'monitor'@'%';
SQL

step "storm: 3 idle connections and 1 runaway SELECT SLEEP(600) as app1"
"$STORM" --url "mysql://app1:app1-pw@127.0.0.1:$PORT/demo" --idle 3 --runaway 1 \
    --sleep-query 600 --hold 120 >"$DEMO/storm.log" 2>&1 &
STORM_PID=$!

# k_longtime=3: wait until the runaway has run long enough to be abnormal.
processlist() {
    sql -t -e "SELECT ID, USER, HOST, DB, COMMAND, TIME, STATE, LEFT(INFO, 40) AS INFO
               FROM information_schema.PROCESSLIST WHERE USER = 'app1' ORDER BY ID"
}
for i in $(seq 300); do
    n=$(sql -N -e "SELECT COUNT(*) FROM information_schema.PROCESSLIST
                   WHERE USER = 'app1' AND COMMAND = 'Query' AND TIME >= 4")
    [ "$n" -ge 1 ] && break
    kill -0 "$STORM_PID" 2>/dev/null || { echo "demo: storm died:"; cat "$DEMO/storm.log"; exit 1; }
    [ "$i" = 300 ] && { echo "demo: the runaway query never showed up"; processlist; exit 1; }
    sleep 0.1
done
processlist

step "writing $DEMO/demo.ini from examples/demo.ini"
sed -e "s|@PORT@|$PORT|g" -e "s|@DEMO_DIR@|$DEMO|g" examples/demo.ini >"$DEMO/demo.ini"
chmod 600 "$DEMO/demo.ini"
grep -v -e '^;' -e '^$' "$DEMO/demo.ini" | sed 's/^/    /'

step "mysqk kill -c .demo/demo.ini --db demo --user app1"
set +e
"$MYSQK" kill -c "$DEMO/demo.ini" --db demo --user app1
RC=$?
set -e
echo "(exit code $RC)"

step "processlist after the kill: the runaway is gone, the idle connections stay"
sleep 1.5
processlist

step "what the storm's client saw"
sleep 1
cat "$DEMO/storm.log"
exit "$RC"
