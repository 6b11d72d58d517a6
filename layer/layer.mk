# Lambda layer zips, one per architecture, each holding the static release binary that the image
# ships too (release/build.sh: one release build per architecture serves both). Statically
# linked against glibc, the binary needs no libc from the Lambda OS, so it runs on both Lambda
# OS families, Amazon Linux 2 (glibc 2.26) and Amazon Linux 2023 (2.34). Included by the root
# Makefile.
#
#   make layer          layer/secrets-agent-x86_64.zip
#   make layer-arm64    layer/secrets-agent-arm64.zip (the aarch64 std from rustup, or else
#                       from Debian's packages: see release/build.sh)
#   make layer-all      both
#   make layer-test     checks both zips: layout, executable bit, `file`, no glibc need past 2.26
#
# Each zip holds exactly `extensions/secrets-agent` and the exec wrapper `secrets-agent-exec`
# (both mode 0755): Lambda starts every file under /opt/extensions as an extension, so nothing
# else may go there (see extensions/README.md); the wrapper sits at /opt, outside it.

LAYER_BUILD := layer/build
# cargo-lambda (its PyPI package brings zig) builds the Rust example function
# (examples/lambda-rust/example.mk) for glibc LAYER_GLIBC; the layer itself no longer needs it.
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

# $(call layer_zip,LAMBDA_ARCH,DIST_ARCH)
define layer_zip
	rm -rf $(LAYER_BUILD)/$(1)
	install -d -m 0755 $(LAYER_BUILD)/$(1)/extensions
	install -m 0755 $(DIST)/$(2)/secrets-agent $(LAYER_BUILD)/$(1)/extensions/secrets-agent
	install -m 0755 layer/secrets-agent-exec $(LAYER_BUILD)/$(1)/secrets-agent-exec
	# Fixed timestamps and no extra attributes: the same binary gives the same zip.
	touch -h -d '1980-01-02 00:00:00' $(LAYER_BUILD)/$(1)/extensions $(LAYER_BUILD)/$(1)/extensions/secrets-agent \
	  $(LAYER_BUILD)/$(1)/secrets-agent-exec
	rm -f $@
	cd $(LAYER_BUILD)/$(1) && TZ=UTC zip -q -X -r $(CURDIR)/$@ extensions/secrets-agent secrets-agent-exec
	@ls -l $@ $(LAYER_BUILD)/$(1)/extensions/secrets-agent
endef

# Phony on purpose: cargo decides what is stale.
.PHONY: layer/secrets-agent-x86_64.zip layer/secrets-agent-arm64.zip
layer/secrets-agent-x86_64.zip: release-amd64
	$(call layer_zip,x86_64,amd64)

layer/secrets-agent-arm64.zip: release-arm64
	$(call layer_zip,arm64,arm64)

layer-test: | deps
	layer/check.sh layer/secrets-agent-x86_64.zip x86-64
	layer/check.sh layer/secrets-agent-arm64.zip 'ARM aarch64'
