# `make bench` (issue 7): builds the agent and the floor server (benches/floor.rs), then
# bench/run.py measures hits against the floor, cold-miss storms, expiry under load, start-up,
# memory and sizes in one run, and writes a Markdown table to stdout and bench/results/latest.md.
# It takes about 7 minutes; run it on a quiet machine. BENCH_QUICK=1 shortens every phase.

.PHONY: bench bench-deps

# wrk from Debian is the load generator.
bench-deps:
	@command -v wrk >/dev/null || { \
	  echo "installing wrk"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get install -y -qq wrk || { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk; }; \
	}

bench: venv bench-deps
	$(PY) bench/run.py

# Instructions per cache hit of the agent and the floor under callgrind (bench/instructions.py):
# deterministic, so it shows hit-path changes that the req/s figures cannot tell from noise.
# Takes the binaries `make bench` built; about 2 minutes.
.PHONY: bench-instructions
bench-instructions: venv
	@command -v valgrind >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get install -y -qq valgrind || { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq valgrind; }; \
	}
	$(PY) bench/instructions.py

# `make soak`: SOAK_MINUTES (default 30) of mixed, partly hostile load through the fault proxy
# (bench/soak.py): hits, misses past cache_size, rotations, outages, throttling storms, rude
# clients. Samples RSS, fds, tasks and errors every 10 s; fails if a hit fails or any of them
# keeps growing. Table and PNG plots in bench/results/. Not part of `make test`.
.PHONY: soak
SOAK_MINUTES ?= 30
soak: venv
	cargo build --release --bin secrets-agent
	$(PY) -m pip install -q matplotlib==3.9.2
	SOAK_MINUTES=$(SOAK_MINUTES) $(PY) bench/soak.py
