# One entry point per user action. `make test` and `make run` work on a fresh clone:
# they create the virtual environment, install the pinned dependencies and the project.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup test lint format bench bench-physics clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest

bench: bench-physics

bench-physics: setup
	$(BIN)/python benchmarks/physics.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
