# The two quick-start commands of README: `make run` trains the main example on the embedded digits data,
# `make test` runs the test suite. Each first makes the virtual environment $(VENV) with README's install
# step when it is absent (or older than pyproject.toml). `make lint` runs ruff and mypy as CI does.

PYTHON ?= python3
VENV ?= .venv
SPEC ?= specs/digits_mlp.yaml
ARGS ?=
BIN := $(VENV)/bin

.PHONY: run test lint

run: $(VENV)/.installed
	$(BIN)/nnspec run $(SPEC) $(ARGS)

test: $(VENV)/.installed
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
