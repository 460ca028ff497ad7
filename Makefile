# mysqk developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
CARGO ?= cargo
# Integration tests mostly wait on server-side timers (k_longtime, k_sleep),
# so more test threads than cores shortens the run.
TEST_THREADS ?= 4

.PHONY: deps test lint demo bench

## deps: install mariadb-server if missing (apt as root); the test SMTP server is Rust
deps:
	@.ci/deps.sh

## test: unit, integration and doc tests against real MariaDB servers
test: deps
	$(CARGO) test --workspace -- --test-threads=$(TEST_THREADS)

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

## demo: throwaway MariaDB + connection storm + one `mysqk kill` pass
demo: deps
	$(CARGO) build --bins --examples
	examples/demo.sh

## bench: mysqk vs pt-kill on a throwaway MariaDB (bench/run.sh; ~6 min);
##        writes bench/results/latest.md. BENCH_ARGS='--only S1,S5 --rounds 5'
bench:
	bash bench/run.sh $(BENCH_ARGS)
