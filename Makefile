# PriceParity: `make demo` and `make test` are all a new machine needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# the tests spread over the cores, at most 4 workers (pytest-xdist); PARALLEL= runs them in one process
PARALLEL ?= -n auto --maxprocesses=4
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)

.PHONY: demo test test-fast bench docs system-deps clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

demo: $(STAMP)
	$(BIN)/priceparity demo --out out/demo

# System services the tests use: Debian's chromium (browser tests) and the local PostgreSQL.
system-deps:
	bash .ci/system-deps

test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PARALLEL)

test-fast: $(STAMP)
	$(BIN)/python -m pytest $(PARALLEL) -m "not browser and not postgres and not slow"

bench: $(STAMP)
	test -f $(STAMP)-bench || { $(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]' && touch $(STAMP)-bench; }
	$(BIN)/python -m pytest -q bench/tests  # the bench's own code first: minutes of timings on broken code are lost
	$(BIN)/python bench/run.py

docs: $(STAMP)
	$(BIN)/python -c "from audits.settings import settings_markdown; print(settings_markdown(), end='')" > docs/configuration.md

clean:
	rm -rf out test-artifacts .pytest_cache
