# Two commands on a fresh machine: `make demo` and `make test`.
# Everything CI needs is installed from here; nothing is installed by hand.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the tests use: promtool, amtool and real Prometheus/Alertmanager servers,
# systemd-analyze for the unit file, openssl for test certificates, chromium for the
# status page's real-browser test.
DEBIAN_TOOLS := prometheus prometheus-alertmanager systemd openssl chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint typecheck pytest tools venv clean bench soak

demo: $(STAMP)
	@echo "Starting the exporter against its built-in OMS simulator (Ctrl-C to stop)..."
	$(BIN)/oms-exporter --demo

test: $(STAMP) tools lint typecheck pytest

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Install promtool/amtool (and the servers) from Debian when they are missing.
tools:
	@if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null \
	    || ! command -v prometheus >/dev/null || ! command -v prometheus-alertmanager >/dev/null \
	    || ! command -v systemd-analyze >/dev/null || ! command -v openssl >/dev/null \
	    || ! command -v chromium >/dev/null; then \
	  echo "Installing $(DEBIAN_TOOLS) from Debian..."; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEBIAN_TOOLS) >/dev/null; \
	fi
	@promtool --version | head -n 1

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when it collected no tests: that is a failure here, as is any other non-zero.
pytest: $(STAMP)
	$(BIN)/pytest

# Benchmarks: 100, 1,000 and 10,000 projects against the simulator; writes bench/RESULTS.md
# (about 12 minutes). A 50-project smoke version runs in `make test`.
bench: $(STAMP)
	$(BIN)/python bench/run.py

# Soak: 1,000 projects at a 1 s interval with faults for 3 minutes; appends to scripts/SOAK.md.
soak: $(STAMP)
	$(BIN)/python scripts/soak.py --projects 1000 --minutes 3

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-artifacts
