# Lambda layer zips, built with cargo-lambda (its PyPI package brings zig). Zig links against the
# glibc named in the target (`.2.26`, Amazon Linux 2's), so the one binary runs on both Lambda
# OS families, Amazon Linux 2 (glibc 2.26) and Amazon Linux 2023 (2.34). Included by the root
# Makefile.
#
#   make layer          layer/secrets-agent-x86_64.zip
#   make layer-arm64    layer/secrets-agent-arm64.zip (needs the aarch64-unknown-linux-gnu std:
#                       `rustup target add aarch64-unknown-linux-gnu`, which the target runs)
#   make layer-all      both
#   make layer-test     checks every zip that exists (x86_64 must): layout, executable bit, `file`
#
# Each zip holds exactly `extensions/secrets-agent` and the exec wrapper `secrets-agent-exec`
# (both mode 0755): Lambda starts every file under /opt/extensions as an extension, so nothing
# else may go there (see extensions/README.md); the wrapper sits at /opt, outside it.
# Builds go to LAYER_TARGET_DIR (default: $CARGO_TARGET_DIR, else target/layer) so they do not
# wait on the lock of a debug build in target/.

LAYER_TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),$(CURDIR)/target/layer)
LAYER_BUILD := layer/build
CARGO_LAMBDA := $(VENV)/bin/cargo-lambda
CARGO_LAMBDA_VERSION := 1.9.2
# cargo-lambda runs as `cargo lambda`; zig comes from the venv's ziglang (`python3 -m ziglang`).
LAYER_PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: layer layer-arm64 layer-all layer-test cargo-lambda

layer: layer/secrets-agent-x86_64.zip
layer-arm64: layer/secrets-agent-arm64.zip
layer-all: layer layer-arm64

cargo-lambda: $(CARGO_LAMBDA)

$(CARGO_LAMBDA): | deps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q "cargo-lambda==$(CARGO_LAMBDA_VERSION)"

# Oldest glibc among the Lambda runtimes' OS (Amazon Linux 2).
LAYER_GLIBC := 2.26

# $(call layer_zip,ARCH,RUST_TARGET)
define layer_zip
	@if ! rustup target list --installed 2>/dev/null | grep -qx '$(2)'; then \
	  echo "rustup target add $(2)"; rustup target add $(2) || { \
	    echo "error: no Rust std for $(2); run 'rustup target add $(2)' on a machine with internet access" >&2; \
	    exit 1; }; \
	fi
	rm -rf $(LAYER_BUILD)/$(1)
	# The target dir goes in the environment: cargo-lambda 1.9 passes --target-dir on to
	# `cargo metadata`, which refuses it.
	PATH="$(LAYER_PATH)" CARGO_TARGET_DIR="$(LAYER_TARGET_DIR)" cargo lambda build --release \
	  --extension --target $(2).$(LAYER_GLIBC) --lambda-dir $(LAYER_BUILD)/$(1)
	cp layer/secrets-agent-exec $(LAYER_BUILD)/$(1)/secrets-agent-exec
	chmod 0755 $(LAYER_BUILD)/$(1)/extensions/secrets-agent $(LAYER_BUILD)/$(1)/secrets-agent-exec
	# Fixed timestamps and no extra attributes: the same binary gives the same zip.
	touch -h -d '1980-01-02 00:00:00' $(LAYER_BUILD)/$(1)/extensions $(LAYER_BUILD)/$(1)/extensions/secrets-agent \
	  $(LAYER_BUILD)/$(1)/secrets-agent-exec
	rm -f $@
	cd $(LAYER_BUILD)/$(1) && TZ=UTC zip -q -X -r $(CURDIR)/$@ extensions/secrets-agent secrets-agent-exec
	@ls -l $@ $(LAYER_BUILD)/$(1)/extensions/secrets-agent
endef

# Phony on purpose: cargo decides what is stale.
.PHONY: layer/secrets-agent-x86_64.zip layer/secrets-agent-arm64.zip
layer/secrets-agent-x86_64.zip: $(CARGO_LAMBDA)
	$(call layer_zip,x86_64,x86_64-unknown-linux-gnu)

layer/secrets-agent-arm64.zip: $(CARGO_LAMBDA)
	$(call layer_zip,arm64,aarch64-unknown-linux-gnu)

layer-test: | deps
	layer/check.sh layer/secrets-agent-x86_64.zip x86-64
	@if [ -f layer/secrets-agent-arm64.zip ]; then \
	  layer/check.sh layer/secrets-agent-arm64.zip 'ARM aarch64'; \
	else echo "layer/secrets-agent-arm64.zip not built (make layer-arm64): not checked"; fi
