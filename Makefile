# The two commands the README promises: `make run` starts a cluster, `make test` runs every test.

DATA_DIR ?=
ARGS ?=

.PHONY: run test deps build fmt lint bench

deps:
	./scripts/install-deps.sh

build: deps
	cargo build --release -p kate

run: build
	[ -f target/images/busybox.tar ] || ./scripts/build-busybox-image.sh
	./target/release/kate image import $(if $(DATA_DIR),--data-dir $(DATA_DIR)) target/images/busybox.tar
	./target/release/kate server $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(ARGS)

test: deps
	./scripts/test.sh

bench: build
	cargo run --release -p kate-bench -- --kate ./target/release/kate

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
