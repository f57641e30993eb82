# Harbour's entry points. Each target creates or refreshes the local virtual environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.harbour-installed

.PHONY: setup demo test soak ci lint docs bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## demo: the main job on the embedded defaults
demo: setup
	$(BIN)/harbour scenario protocol-demo

## test: lint + the default test run (quick: no soak tests); fails if no test was collected
test: setup lint
	$(BIN)/python -m pytest

## soak: the long fault and soak runs (CI runs them after the default run)
soak: setup
	$(BIN)/python -m pytest -m soak

lint: setup
	$(BIN)/ruff check .

## docs: regenerate the parts of docs/ that come from code
docs: setup
	$(BIN)/python docs/generate.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
