# The Rust example function (examples/lambda-rust), built once with cargo-lambda for x86_64 and
# reused by its end-to-end test. Included by the root Makefile.
#
#   make example-rust        target/example-rust/lambda/bootstrap/bootstrap (x86_64, glibc 2.26)
#   make example-rust-test   the example as the function's runtime, with the extension, against
#                            lambda-simulator and moto (tests/lambda.rs, rust_example_*)
#
# Its own crate with its own Cargo.lock and target dir: the root crate's build never sees it.

EXAMPLE_RUST_TARGET_DIR ?= $(CURDIR)/target/example-rust
EXAMPLE_RUST_BIN := $(EXAMPLE_RUST_TARGET_DIR)/lambda/bootstrap/bootstrap

.PHONY: example-rust example-rust-test

# Phony on purpose: cargo decides what is stale.
example-rust: $(CARGO_LAMBDA)
	cd examples/lambda-rust && PATH="$(LAYER_PATH)" CARGO_TARGET_DIR="$(EXAMPLE_RUST_TARGET_DIR)" \
	  cargo lambda build --release --locked --target x86_64-unknown-linux-gnu.$(LAYER_GLIBC) \
	  --lambda-dir $(EXAMPLE_RUST_TARGET_DIR)/lambda
	@ls -l $(EXAMPLE_RUST_BIN)

example-rust-test: venv example-rust
	SECRETS_AGENT_EXAMPLE_BIN=$(EXAMPLE_RUST_BIN) cargo test --test lambda -- --ignored --exact \
	  rust_example_reads_the_secret_at_init_and_on_each_invoke
