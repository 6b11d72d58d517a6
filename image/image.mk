# The container image (image/Containerfile), FROM scratch, built with podman. Included by the
# root Makefile.
#
#   make image          the static x86_64 binary, the image secrets-agent:VERSION-amd64, and
#                       the manifest list secrets-agent:VERSION saved as an OCI archive in image/
#   make image-arm64    the same for arm64 (needs the aarch64-unknown-linux-gnu std:
#                       `rustup target add aarch64-unknown-linux-gnu`)
#
# The binary is linked statically against glibc (crt-static), so the image needs no libc of its
# own. It builds in target/<rust-target>/release (IMAGE_TARGET_DIR, default the cargo target dir),
# apart from the host's target/release.

IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
IMAGE_NAME := secrets-agent
IMAGE_TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),$(CURDIR)/target)
IMAGE_BUILD := image/build
IMAGE_ARCHIVE := image/$(IMAGE_NAME)-$(IMAGE_VERSION).oci.tar
PODMAN := CONTAINERS_CONF=$(CURDIR)/image/containers.conf podman
CA_BUNDLE := /etc/ssl/certs/ca-certificates.crt

.PHONY: image image-arm64 image-deps image-amd64-context image-arm64-context

# Debian packages: podman and runc run the images, busybox-static is the tests' application
# image, ca-certificates the bundle the image ships.
image-deps:
	@need=""; \
	command -v podman >/dev/null || need="$$need podman"; \
	command -v runc >/dev/null || need="$$need runc"; \
	test -x /bin/busybox || need="$$need busybox-static"; \
	test -f $(CA_BUNDLE) || need="$$need ca-certificates"; \
	if [ -n "$$need" ]; then \
	  echo "installing:$$need"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$need; \
	fi

# $(call image_context,ARCH,RUST_TARGET)
define image_context
	@if ! rustup target list --installed 2>/dev/null | grep -qx '$(2)'; then \
	  echo "rustup target add $(2)"; rustup target add $(2) || { \
	    echo "error: no Rust std for $(2); run 'rustup target add $(2)' on a machine with internet access" >&2; \
	    exit 1; }; \
	fi
	RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$(IMAGE_TARGET_DIR)" \
	  cargo build --release --locked --target $(2)
	@file -b $(IMAGE_TARGET_DIR)/$(2)/release/secrets-agent | grep -q 'static' || { \
	  echo "error: $(IMAGE_TARGET_DIR)/$(2)/release/secrets-agent is not statically linked" >&2; exit 1; }
	rm -rf $(IMAGE_BUILD)/$(1)
	install -d -m 0755 $(IMAGE_BUILD)/$(1)/run/secrets-agent
	install -m 0755 $(IMAGE_TARGET_DIR)/$(2)/release/secrets-agent $(IMAGE_BUILD)/$(1)/secrets-agent
	install -m 0644 $(CA_BUNDLE) $(IMAGE_BUILD)/$(1)/ca-certificates.crt
	$(PODMAN) build -q --layers=false --format docker --platform linux/$(1) --build-arg VERSION=$(IMAGE_VERSION) \
	  --build-arg SOURCE="$$(git remote get-url origin 2>/dev/null || true)" \
	  -t $(IMAGE_NAME):$(IMAGE_VERSION)-$(1) -f image/Containerfile $(IMAGE_BUILD)/$(1)
endef

image-amd64-context: image-deps
	$(call image_context,amd64,x86_64-unknown-linux-gnu)

image-arm64-context: image-deps
	$(call image_context,arm64,aarch64-unknown-linux-gnu)

# $(call image_manifest,ARCH...): the manifest list over the arch images, saved as an OCI archive.
# It is not kept in local storage: podman 4.3 (Debian 12) cannot list images while a local
# manifest list exists. The per-arch tags stay.
define image_manifest
	@if $(PODMAN) manifest exists $(IMAGE_NAME):$(IMAGE_VERSION); then \
	  $(PODMAN) manifest rm $(IMAGE_NAME):$(IMAGE_VERSION) >/dev/null; fi
	$(PODMAN) manifest create $(IMAGE_NAME):$(IMAGE_VERSION)
	for arch in $(1); do \
	  $(PODMAN) manifest add $(IMAGE_NAME):$(IMAGE_VERSION) \
	    containers-storage:localhost/$(IMAGE_NAME):$(IMAGE_VERSION)-$$arch || exit 1; \
	done
	rm -f $(IMAGE_ARCHIVE)
	$(PODMAN) manifest push -q --all $(IMAGE_NAME):$(IMAGE_VERSION) oci-archive:$(IMAGE_ARCHIVE)
	$(PODMAN) manifest rm $(IMAGE_NAME):$(IMAGE_VERSION) >/dev/null
	@ls -l $(IMAGE_ARCHIVE)
endef

image: image-amd64-context
	$(call image_manifest,amd64)

image-arm64: image-amd64-context image-arm64-context
	$(call image_manifest,amd64 arm64)
