# Harbour's entry points. Each target creates or refreshes the local virtual environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.harbour-installed

.PHONY: setup demo test soak lint docs bench bench-quick browser npm services clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## demo: the main job on the embedded defaults -- a hub and three ships through every kind of fault,
## checked row by row; the report (markdown, JSON, charts) lands in demo-report/
demo: setup
	$(BIN)/harbour scenario run demo --report demo-report

## browser: Debian's Chromium + chromedriver for the status page's browser tests (root or sudo)
browser:
	sh tests/browser_setup.sh

## npm: tus-js-client (pinned in tests/tus_js/package-lock.json) into tests/tus_js/node_modules, for the tus
## conformance test; needs the machine's node and npm
npm:
	sh tests/npm_setup.sh

## services: Debian's HAProxy and PostgreSQL 15 server binaries, for the hub cluster's tests and benchmarks
## (scenarios/services.py starts throwaway ones on loopback), and fuse3 for the power-loss harness
## (scenarios/powercut_fs.py); installs only what is missing (root or sudo)
services:
	sh tests/services_setup.sh

## test: lint + the default test run (quick: no soak tests); fails if no test was collected
test: setup lint browser npm services
	$(BIN)/python -m pytest

## soak: the long fault and soak runs (CI runs them after the default run)
soak: setup browser npm services
	$(BIN)/python -m pytest -m soak

## bench: every benchmark against rsync, Arrow Flight and JSON/HTTP (~40 min; needs Debian's rsync),
## then docs/benchmarks.md from the JSON results
bench: setup
	$(BIN)/python bench/run.py
	$(BIN)/python bench/render.py

## bench-quick: one run each on small data (~4-5 min); results kept out of the committed ones
bench-quick: setup
	$(BIN)/python bench/run.py --quick --results .bench-quick

lint: setup
	$(BIN)/ruff check .

## docs: regenerate the parts of docs/ that come from code
docs: setup
	$(BIN)/python docs/generate.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis demo-report
