# Two commands from a fresh clone: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint typecheck bench bench-quick test-cluster chaos clean ui ui-check browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/jetwork demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint browser
	$(BIN)/python -m pytest -q

# The browser tests (tests/integration/test_ui.py) drive Debian's chromium; as root this installs
# it, otherwise it says how. They fail, never skip, without it.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "the browser tests need chromium: sudo apt-get install -y chromium" >&2; exit 1; \
	  fi; }

# The web UI: ui/ (package.json, package-lock.json) built into gateway/static/, which is
# committed so that pip install brings the UI without Node. Rebuild after changing ui/src.
ui:
	cd ui && npm ci --no-audit --no-fund && npm run build

# The committed build is what the sources and the lock file make (the build is reproducible).
ui-check: ui
	git diff --exit-code --stat -- gateway/static
	test -z "$$(git status --porcelain -- gateway/static)"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not cluster"

test-cluster: $(STAMP)
	$(BIN)/python -m pytest -q -m cluster

# Celery (the peer S1/S3 are compared with) goes into .venv; it runs when redis-server is
# installed too (apt-get install redis-server), and is left out with one line saying so if not.
PEERS := $(VENV)/.peers
$(PEERS): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[peers]' || echo "Celery not installed: S1/S3 run without it"
	touch $(PEERS)

bench: $(PEERS)
	$(BIN)/python -m bench

# Everything at small sizes, one run each (2-3 minutes): checks that the benchmark works.
bench-quick: $(PEERS)
	$(BIN)/python -m bench --quick

# The long chaos run (docs/reliability.md): 500 workflows, 5 minutes of faults on a 3-node cluster.
# `make test` runs a short version (tests/integration/test_chaos_short.py).
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos --workflows 500 --seconds 300

clean:
	rm -rf $(VENV) .jetwork .pytest_cache .mypy_cache .ruff_cache tests/artifacts ui/node_modules
