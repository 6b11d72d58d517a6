# `make bench` (issue 7): builds the agent and the floor server (benches/floor.rs), then
# bench/run.py measures hits against the floor, cold-miss storms, expiry under load, start-up,
# memory and sizes in one run, for secrets-agent and the two AWS agents it replaces, and writes
# Markdown tables to stdout and bench/results/latest.md. It takes about 15 minutes (plus the
# AWS agents' one-time build); run it on a quiet machine. BENCH_QUICK=1 shortens every phase;
# BENCH_OURS_ONLY=1 leaves the AWS agents out.

.PHONY: bench bench-deps bench-agents

# The AWS agents (crates.io, Apache-2.0), built once into bench/.agents (git-ignored) and reused.
# Their TLS is rustls over aws-lc-rs; aws-lc-sys builds its C with the cc crate (no cmake).
BENCH_AGENTS_ROOT := bench/.agents
AWS_SM_AGENT_VERSION := 2.1.0
AWS_WCP_VERSION := 3.1.2
$(BENCH_AGENTS_ROOT)/bin/aws_secretsmanager_agent:
	nice -n 19 cargo install --locked --version $(AWS_SM_AGENT_VERSION) --root $(BENCH_AGENTS_ROOT) aws_secretsmanager_agent
$(BENCH_AGENTS_ROOT)/bin/aws-workload-credentials-provider:
	nice -n 19 cargo install --locked --version $(AWS_WCP_VERSION) --root $(BENCH_AGENTS_ROOT) aws_workload_credentials_provider
bench-agents: $(BENCH_AGENTS_ROOT)/bin/aws_secretsmanager_agent $(BENCH_AGENTS_ROOT)/bin/aws-workload-credentials-provider

# wrk from Debian is the load generator.
bench-deps:
	@command -v wrk >/dev/null || { \
	  echo "installing wrk"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get install -y -qq wrk || { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk; }; \
	}

# BENCH_OURS_ONLY=1 needs no AWS agents.
BENCH_AGENTS_NEEDED := $(if $(filter 1,$(BENCH_OURS_ONLY)),,bench-agents)
bench: venv bench-deps $(BENCH_AGENTS_NEEDED)
	$(PY) bench/run.py

# Instructions per cache hit of the agent, the two AWS agents and the floor under callgrind
# (bench/instructions.py): deterministic, so it shows hit-path changes that the req/s figures
# cannot tell from noise. Takes the binaries `make bench` built; about 5 minutes.
.PHONY: bench-instructions
bench-instructions: venv $(BENCH_AGENTS_NEEDED)
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
