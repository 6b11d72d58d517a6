# The container image (image/Containerfile), FROM scratch, built with podman. Included by the
# root Makefile.
#
#   make image          the images secrets-agent:VERSION-amd64 and secrets-agent:VERSION-arm64
#                       and the manifest list secrets-agent:VERSION over both, saved as an OCI
#                       archive in image/
#   make image-arm64    the same (kept as a name: `make image` has both architectures now)
#
# Each image holds the static release binary of its architecture (release/build.sh), the very
# file the layer zip of that architecture holds: one release build per architecture serves both.
# The binary is linked statically against glibc (crt-static), so the image needs no libc of its
# own. Building the arm64 image runs nothing arm64 (FROM scratch, no RUN): no emulation needed.

IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
IMAGE_NAME := secrets-agent
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

# $(call image_context,ARCH)
define image_context
	rm -rf $(IMAGE_BUILD)/$(1)
	install -d -m 0755 $(IMAGE_BUILD)/$(1)/run/secrets-agent
	install -m 0755 $(DIST)/$(1)/secrets-agent $(IMAGE_BUILD)/$(1)/secrets-agent
	install -m 0644 $(CA_BUNDLE) $(IMAGE_BUILD)/$(1)/ca-certificates.crt
	$(PODMAN) build -q --layers=false --format docker --platform linux/$(1) --build-arg VERSION=$(IMAGE_VERSION) \
	  --build-arg SOURCE="$$(git remote get-url origin 2>/dev/null || true)" \
	  -t $(IMAGE_NAME):$(IMAGE_VERSION)-$(1) -f image/Containerfile $(IMAGE_BUILD)/$(1)
endef

image-amd64-context: image-deps release-amd64
	$(call image_context,amd64)

image-arm64-context: image-deps release-arm64
	$(call image_context,arm64)

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

image: image-amd64-context image-arm64-context
	$(call image_manifest,amd64 arm64)

image-arm64: image
