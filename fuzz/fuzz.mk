# `make fuzz`: run each fuzz target for FUZZ_SECONDS (default 60). Needs the nightly toolchain
# and cargo-fuzz (installed if missing). Not part of `make test`.
FUZZ_SECONDS ?= 60

.PHONY: fuzz
fuzz:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && for t in query config; do \
	  cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done
