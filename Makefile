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

test: lint
	$(BIN)/python -m pytest -q

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
	rm -rf $(VENV) .jetwork .pytest_cache .mypy_cache .ruff_cache
