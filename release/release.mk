# The release binaries: one static binary per architecture (release/build.sh), built once and
# shipped by both the layer zip (layer/layer.mk) and the image (image/image.mk). Included by
# the root Makefile.
#
#   make release-amd64   target/dist/amd64/secrets-agent (x86_64)
#   make release-arm64   target/dist/arm64/secrets-agent (aarch64; the std from rustup, or else
#                        from Debian's packages, which the script installs)
#
# Phony on purpose: cargo decides what is stale, so asking twice costs one no-op cargo run.

DIST := $(CURDIR)/target/dist

.PHONY: release-amd64 release-arm64 release-all

release-amd64: | deps
	release/build.sh amd64

release-arm64: | deps
	release/build.sh arm64

release-all: release-amd64 release-arm64
