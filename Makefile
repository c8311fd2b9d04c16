# Two commands on a fresh machine: `make demo` and `make test`.
# Everything CI needs is installed from here; nothing is installed by hand.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# `make demo` needs the exporter only; everything else also needs the dev extra.
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
# Debian packages the tests use: promtool, amtool and real Prometheus/Alertmanager servers,
# systemd-analyze for the unit file, openssl for test certificates, chromium for the
# status page's real-browser test.
DEBIAN_TOOLS := prometheus prometheus-alertmanager systemd openssl chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Options for scripts/demo_stack.py, e.g. DEMO_STACK_ARGS="--prometheus-port 9090".
DEMO_STACK_ARGS ?=

# $(call debian_install,COMMANDS,PACKAGES): install PACKAGES from Debian when one of
# COMMANDS is missing.
define debian_install
	@if ! { $(foreach command,$(1),command -v $(command) >/dev/null &&) true; }; then \
	  echo "Installing $(2) from Debian..."; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(2) >/dev/null; \
	fi
endef

.PHONY: demo demo-stack test lint typecheck pytest tools stack-tools venv clean bench soak \
	dashboards screenshot

demo: $(RUNTIME_STAMP)
	@echo "Starting the exporter against its built-in OMS simulator (Ctrl-C to stop)..."
	$(BIN)/oms-exporter --demo

# The simulator and exporter, a real Prometheus with the shipped rules and a real
# Alertmanager with the example config, on 127.0.0.1; Ctrl-C stops them all.
demo-stack: $(RUNTIME_STAMP) stack-tools
	$(BIN)/python scripts/demo_stack.py $(DEMO_STACK_ARGS)

test: $(DEV_STAMP) tools lint typecheck pytest

venv: $(DEV_STAMP)

$(RUNTIME_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Install promtool/amtool (and the servers) from Debian when they are missing.
tools:
	$(call debian_install,promtool amtool prometheus prometheus-alertmanager systemd-analyze openssl chromium,$(DEBIAN_TOOLS))
	@promtool --version | head -n 1

# Only the servers `make demo-stack` runs.
stack-tools:
	$(call debian_install,prometheus prometheus-alertmanager,prometheus prometheus-alertmanager)

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

# pytest exits 5 when it collected no tests: that is a failure here, as is any other non-zero.
pytest: $(DEV_STAMP)
	$(BIN)/pytest

# grafana/dashboards/*.json from the code in grafana/oms_dashboards (a test checks that
# the committed files are its output).
dashboards: $(DEV_STAMP)
	$(BIN)/python -m grafana.oms_dashboards

# docs/status-page.png: the demo's status page in headless Chromium.
screenshot: $(DEV_STAMP)
	$(call debian_install,chromium,chromium)
	$(BIN)/python scripts/demo_stack.py --screenshot docs/status-page.png

# Benchmarks: 100, 1,000 and 10,000 projects against the simulator; writes bench/RESULTS.md
# (about 12 minutes). A 50-project smoke version runs in `make test`.
bench: $(DEV_STAMP)
	$(BIN)/python bench/run.py

# Soak: 1,000 projects at a 1 s interval with faults for 3 minutes; appends to scripts/SOAK.md.
soak: $(DEV_STAMP)
	$(BIN)/python scripts/soak.py --projects 1000 --minutes 3

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-artifacts
