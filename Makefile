# Two commands for a fresh machine with Python 3.11 and make:
#   make run   - the demo line (a simulated line, no PLC needed)
#   make test  - lint, type-check and the whole test suite
# Each creates or refreshes the local virtual environment in .venv itself.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# No package registry reachable (README "Without network"): `make test OFFLINE=1
# WHEELHOUSE=DIR` installs the Python packages from DIR only, installs no system
# package, and the tests that need something not installed skip, saying so.
ifdef OFFLINE
PIP_FROM := --no-index $(if $(WHEELHOUSE),--find-links $(abspath $(WHEELHOUSE)))
export EDGE_TEST_OFFLINE := 1
else
PIP_FROM :=
endif

.PHONY: run test lint typecheck unit bench faults test-servers install-runtime screenshots clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(if $(OFFLINE),,$(BIN)/python -m pip install --quiet --upgrade pip)
	$(BIN)/python -m pip install --quiet $(PIP_FROM) -e '.[test]'
	@$(BIN)/edge prepare >/dev/null
	@touch $@

# A line PC (systemd/README.md): the service and its runtime dependencies only, no
# test tools, byte-compiled and its OPC UA standard node cache built now (`edge
# prepare`, in .venv/var/cache/edge), because the unit makes the tree read-only to it
# and so every line's first start is as quick as its restarts.
install-runtime:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(if $(OFFLINE),,$(BIN)/python -m pip install --quiet --upgrade pip)
	$(BIN)/python -m pip install --quiet $(PIP_FROM) -e .
	$(BIN)/python -m compileall -q edge actors
	$(BIN)/edge prepare

# tools/foreground.py: Ctrl-C reaches only the service, so make exits with its status (0).
run: $(STAMP)
	@$(BIN)/python tools/foreground.py $(BIN)/edge run $(if $(CONFIG),--config $(CONFIG))

# Test-time servers: mosquitto (MQTT), chromium (the line display's browser tests) and
# PostgreSQL (the central store's tests start a throw-away cluster from its binaries) are
# installed from apt when running as root.
# promtool (for `promtool check metrics`) comes from Debian's prometheus package,
# unpacked into $(BIN) rather than installed, so no Prometheus server is set up.
test-servers: $(STAMP)
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { \
	  if [ -z "$(OFFLINE)" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing mosquitto (test-time MQTT broker) via apt-get"; \
	    (apt-get install -y -qq mosquitto >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null && apt-get install -y -qq mosquitto >/dev/null)) ; \
	  else \
	    echo "mosquitto not found: install it (e.g. 'sudo apt-get install mosquitto'); MQTT tests will be skipped"; \
	  fi; }
	@test -x /usr/bin/chromium || { \
	  if [ -z "$(OFFLINE)" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (headless browser for the line display tests) via apt-get"; \
	    (apt-get install -y -qq chromium >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null)) ; \
	  else \
	    echo "chromium not found: install it (e.g. 'sudo apt-get install chromium'); browser tests will be skipped"; \
	  fi; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  if [ -z "$(OFFLINE)" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing postgresql (test-time database server) via apt-get"; \
	    (apt-get install -y -qq postgresql >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null && apt-get install -y -qq postgresql >/dev/null)) ; \
	  else \
	    echo "PostgreSQL not found: install it (e.g. 'sudo apt-get install postgresql'); central store tests will be skipped"; \
	  fi; }
	@command -v promtool >/dev/null 2>&1 || test -x $(BIN)/promtool || { \
	  tmp=$$(mktemp -d); \
	  if [ -z "$(OFFLINE)" ] && command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then \
	    echo "fetching promtool (Debian package prometheus, unpacked into $(BIN))"; \
	    (cd $$tmp && (apt-get download prometheus >/dev/null 2>&1 || \
	      ([ "$$(id -u)" = 0 ] && apt-get update -qq >/dev/null && apt-get download prometheus >/dev/null 2>&1))) && \
	    dpkg-deb -x $$tmp/prometheus_*.deb $$tmp/root && cp $$tmp/root/usr/bin/promtool $(BIN)/promtool; \
	  fi; \
	  rm -rf $$tmp; \
	  test -x $(BIN)/promtool || echo "promtool not found: the 'promtool check metrics' test will be skipped"; }

lint: $(STAMP)
	$(BIN)/ruff check edge actors tests tools
	$(BIN)/ruff format --check edge actors tests tools
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test: $(STAMP) test-servers lint typecheck
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/edge bench

# The long fault campaign (docs/faults.md): >= 20 edge kills, >= 5 broker kills,
# 50 machines, real processes; prints the table, writes faults-report.json.
faults: $(STAMP) test-servers
	$(BIN)/python -m tests.faults.campaign --long --json faults-report.json

# The README's pictures of the line display (docs/line-board.png, docs/machine-page.png):
# a demo shift played by the simulator's model, photographed by headless chromium.
screenshots: $(STAMP) test-servers
	$(BIN)/python -m tests.integration.web.screenshots docs

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache
