# xlb: `make demo` runs the main job, `make test` the whole test suite.
# Both install the system packages they need on Debian when missing.
# `make image` builds the agent image (scripts/image.sh; REGISTRY=1: the
# two-stage build of deploy/Containerfile from registry base images).
SHELL := /bin/bash
CARGO ?= cargo
PKGS := clang llvm libelf-dev zlib1g-dev pkg-config iproute2 ethtool iptables nftables make
XLB := target/release/xlb
IMAGE_PKGS := podman buildah runc mmdebstrap binutils
IMAGE ?= ghcr.io/xlb/xlb:$(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

# $(call apt_install,PACKAGES): installs the Debian packages that are missing.
apt_install = missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

.PHONY: deps build test demo lint fmt clean image

deps:
	@$(call apt_install,$(PKGS))
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (rustup) first"; exit 1; }

build: deps
	$(CARGO) build --release --workspace

# The image test (tests/image.rs) builds and runs the agent image: the test
# set-up installs what it needs, so CI never skips it.
# `cargo test --workspace --no-fail-fast`, with the test executables run
# TEST_JOBS at a time, longest first (testkit/src/bin/xlb-test-run).
# TEST_ARGS: cargo test arguments (`--test e2e_services`, `-- --nocapture`).
# Not `cargo run`: the variables it sets would make cargo rebuild the crates
# whose build scripts watch them (ring: CARGO_PKG_NAME).
TEST_JOBS ?= 3
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
test: deps
	@$(call apt_install,$(IMAGE_PKGS))
	$(CARGO) build -q -p xlb-testkit --bin xlb-test-run
	CARGO=$(CARGO) $(TARGET_DIR)/debug/xlb-test-run -j $(TEST_JOBS) $(TEST_ARGS)

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

demo: build
	./scripts/demo.sh $(XLB)

image: deps
	@$(call apt_install,$(IMAGE_PKGS))
ifdef REGISTRY
	./scripts/image.sh --registry --tag $(IMAGE)
else
	$(CARGO) build --release -p xlb --bin xlb
	./scripts/image.sh --binary $(XLB) --tag $(IMAGE)
endif

clean:
	$(CARGO) clean
