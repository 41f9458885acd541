# xlb: `make demo` runs the main job, `make test` the whole test suite.
# Both install the system packages they need on Debian when missing.
SHELL := /bin/bash
CARGO ?= cargo
PKGS := clang llvm libelf-dev zlib1g-dev pkg-config iproute2 ethtool iptables nftables make
XLB := target/release/xlb

.PHONY: deps build test demo lint fmt clean

deps:
	@missing=""; for p in $(PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (rustup) first"; exit 1; }

build: deps
	$(CARGO) build --release --workspace

test: deps
	$(CARGO) test --workspace --no-fail-fast

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

demo: build
	./scripts/demo.sh $(XLB)

clean:
	$(CARGO) clean
