# The README's commands. Each sets itself up: virtual environment, dependencies, system packages.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench compile system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.run

## make demo: run the daily job on the bundled examples (ingest, site, feeds, emails, delivery)
demo: $(VENV)/.run
	$(BIN)/newsletter demo --out demo-output

# axe-core, for the accessibility tests (package.json pins it).
node_modules/.package-lock.json: package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --silent; \
	else echo "note: npm missing; the accessibility tests will skip (apt-get install npm)"; fi

# The compose path compiled with mypyc (newsletter/speedups.py says which modules): rebuilt
# whenever a source changes; a build that does not match its sources is never loaded.
SOURCES := $(shell find newsletter -name '*.py')
# (And when the environment is reinstalled: a new Python needs its own build.)
newsletter/_compiled/stamp: $(SOURCES) scripts/compile.py $(VENV)/.test
	$(BIN)/python scripts/compile.py

## make compile: build the compiled compose path (make test and make bench do it first)
compile: newsletter/_compiled/stamp

## make test: lint, type-check and run every test (installs the system packages when root)
test: $(VENV)/.test system-deps node_modules/.package-lock.json newsletter/_compiled/stamp
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

system-deps:
	@sh scripts/system-deps.sh

## make bench: the performance figures quoted in the README
bench: $(VENV)/.test system-deps newsletter/_compiled/stamp
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) demo-output bench/out build newsletter/_compiled
	find newsletter -name '*.so' -delete
