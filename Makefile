# secrets-agent: `make run` shows it serving a secret from a local moto; `make test` runs
# every test. Both install what they need (a Python virtualenv with moto in .venv).

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all build run test lint unit-test deploy-test webhook-test demo-test container-test layer-check arm64-test static-dns-test venv deps clean

all: build

build:
	cargo build --release

# Debian packages a fresh machine may lack: curl for the demo, python3-venv for the virtualenv.
deps:
	@need=""; \
	command -v curl >/dev/null || need="$$need curl"; \
	python3 -m venv --help >/dev/null 2>&1 || need="$$need python3-venv"; \
	command -v zip >/dev/null || need="$$need zip"; \
	command -v file >/dev/null || need="$$need file"; \
	if [ -n "$$need" ]; then \
	  echo "installing:$$need"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$need; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq $$need; fi; \
	fi

venv: $(STAMP)

$(STAMP): tests/requirements.txt tests/deploy/requirements.txt | deps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r tests/requirements.txt
	touch $(STAMP)

run: venv build
	tests/support/demo.sh

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo test -q --test layering

unit-test: venv
	cargo test --lib --bins --tests

deploy-test: venv
	$(PY) -m pytest tests/deploy -q

# The admission webhook over HTTPS with the debug binary `cargo test` built (unit-test runs
# first): the AdmissionReview fixtures, patched pods checked strictly, certificate reload.
webhook-test: venv
	$(PY) -m pytest tests/webhook -q

# The first command a user runs, `make run`, checked with the layer's binary (no second release
# build): under `env -i`, with hostile AWS settings, a taken port, and signals at any point.
demo-test: venv layer
	SECRETS_AGENT_BIN=$(CURDIR)/layer/build/x86_64/extensions/secrets-agent $(PY) -m pytest tests/demo -q

# The image run as real containers (podman): the ECS task's and the EKS pod's shapes.
container-test: venv image
	SECRETS_AGENT_IMAGE=localhost/$(IMAGE_NAME):$(IMAGE_VERSION)-amd64 $(PY) -m pytest tests/containers -q

# The arm64 binaries run under qemu-user (tests/arm64.rs, Debian's qemu-user-static): the layer
# zip's through the Lambda lifecycle against lambda-simulator, and the one inside the arm64
# image (copied out with `podman create` + `podman cp`; nothing arm64 runs in podman) serving a
# secret and stopping on SIGTERM. Both are the one static arm64 release build.
QEMU_AARCH64 := /usr/bin/qemu-aarch64-static
ARM64_TEST_DIR := target/arm64-test

$(QEMU_AARCH64): | deps
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  $$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends qemu-user-static

arm64-test: venv layer-arm64 image $(QEMU_AARCH64)
	rm -rf $(ARM64_TEST_DIR) && mkdir -p $(ARM64_TEST_DIR)
	ctr=$$($(PODMAN) create -q --no-healthcheck --platform linux/arm64 localhost/$(IMAGE_NAME):$(IMAGE_VERSION)-arm64) && \
	  $(PODMAN) cp $$ctr:/usr/local/bin/secrets-agent $(ARM64_TEST_DIR)/image-secrets-agent; \
	  rc=$$?; $(PODMAN) rm -f $$ctr >/dev/null; exit $$rc
	SECRETS_AGENT_ARM64_LAYER_BIN=$(CURDIR)/layer/build/arm64/extensions/secrets-agent \
	SECRETS_AGENT_ARM64_IMAGE_BIN=$(CURDIR)/$(ARM64_TEST_DIR)/image-secrets-agent \
	SECRETS_AGENT_QEMU=$(QEMU_AARCH64) cargo test --test arm64 -- --ignored --nocapture

# The static release binaries resolve an AWS hostname through DNS with the hosts line
# `hosts: files dns myhostname` (tests/support/static_dns.sh), the arm64 one under qemu-user.
static-dns-test: venv layer-all $(QEMU_AARCH64)
	PY=$(PY) tests/support/static_dns.sh layer/build/x86_64/extensions/secrets-agent
	PY=$(PY) tests/support/static_dns.sh layer/build/arm64/extensions/secrets-agent $(QEMU_AARCH64)

# Both layer zips are built and checked; `make container-test` builds both image architectures
# and `make arm64-test` runs the arm64 binaries emulated.
test: venv lint unit-test deploy-test webhook-test layer-check static-dns-test demo-test container-test arm64-test cdk-test example-rust-test

layer-check: layer-all layer-test

clean:
	cargo clean
	rm -rf $(VENV) cdk/node_modules cdk/dist cdk/cdk.out cdk/build

# Targets owned by their folders: `make release-amd64` / `make release-arm64` (release/release.mk,
# the one release build per architecture that the layer and the image share),
# `make layer` (layer/layer.mk), `make image` (image/image.mk),
# `make bench` (bench/bench.mk),
# `make fuzz` (fuzz/fuzz.mk), `make cdk-test` (cdk/cdk.mk),
# `make example-rust` (examples/lambda-rust/example.mk).
-include release/release.mk layer/layer.mk image/image.mk bench/bench.mk fuzz/fuzz.mk cdk/cdk.mk examples/lambda-rust/example.mk

# `make deny`: licenses, bans (a second major of a crate) and sources of every dependency
# (deny.toml), offline. cargo-deny is built once into .tools (git-ignored). Not part of
# `make test`: compiling cargo-deny on a clean clone takes longer than the rest of the lint
# step (see docs/dependencies.md). `make deny-advisories` also checks the RustSec advisory
# database, which it fetches from GitHub (needs network).
.PHONY: deny deny-advisories
CARGO_DENY_VERSION := 0.20.2
CARGO_DENY := .tools/bin/cargo-deny
$(CARGO_DENY):
	nice -n 19 cargo install --locked --version $(CARGO_DENY_VERSION) --root .tools cargo-deny

deny: $(CARGO_DENY)
	$(CARGO_DENY) --offline check licenses bans sources

deny-advisories: $(CARGO_DENY)
	$(CARGO_DENY) check advisories
