# The two quick-start commands of README: `make run` trains the main example on the embedded digits data,
# `make test` runs the fast test tier (every op and engine against the float64 reference, the front end, the
# CLI, interop; docs/testing.md). Each first makes the virtual environment $(VENV) with README's install step
# when it is absent (or older than pyproject.toml). `make test-slow` runs the slow tier (fresh processes,
# signals, several processes, long training, benchmark smoke), `make test-all` both tiers in one run;
# `make lint` runs ruff and mypy as CI does.

PYTHON ?= python3
VENV ?= .venv
SPEC ?= specs/digits_mlp.yaml
ARGS ?=
BIN := $(VENV)/bin

.PHONY: run test test-slow test-all lint

run: $(VENV)/.installed
	$(BIN)/nnspec run $(SPEC) $(ARGS)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m slow

test-all: $(VENV)/.installed
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check nnspec
	$(BIN)/ruff format --check nnspec
	$(BIN)/mypy nnspec

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $@
