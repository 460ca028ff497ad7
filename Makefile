# mysqk developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
CARGO ?= cargo
# Integration tests mostly wait on server-side timers (k_longtime, k_sleep),
# so more test threads than cores shortens the run.
TEST_THREADS ?= 4

.PHONY: deps test lint demo bench deb


## deps: install mariadb-server, mmdebstrap and python3-aiosmtpd (the test
##       SMTP server) if missing (apt as root) and build the Debian sid root
##       with MySQL 9.7
deps:
	@.ci/deps.sh

## test: the whole suite twice, against real MariaDB 10.11 servers, then
##       against real MySQL 9.7 servers (MYSQK_TEST_SERVER picks the flavour)
test: deps
	@# Both flavours run even when the first fails: the CI log shows both.
	@rc=0; \
	for f in mariadb mysql; do \
	    echo "== make test: MYSQK_TEST_SERVER=$$f"; \
	    MYSQK_TEST_SERVER=$$f $(CARGO) test --workspace --no-fail-fast -- --test-threads=$(TEST_THREADS) || rc=1; \
	done; \
	exit $$rc

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

## deb: target/debian/mysqk_<version>_<arch>.deb (release build; dpkg-deb):
##      binary, man pages, completions, systemd unit, docs, empty /etc/mysqk
deb:
	@.ci/deb.sh

## demo: throwaway MariaDB + connection storm + one `mysqk kill` pass
demo: deps
	$(CARGO) build --bins --examples
	examples/demo.sh

## bench: mysqk vs pt-kill on throwaway MariaDB and MySQL 9.7 servers
##        (bench/run.sh); refreshes the rows it ran in bench/results/latest.md.
##        BENCH_ARGS='--only S1,S5 --rounds 5 --server mariadb|mysql|both'
bench:
	bash bench/run.sh $(BENCH_ARGS)
