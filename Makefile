# make test: install everything the tests need into .venv, then lint and run every test.
# The compose tests build the images with `docker compose`; where no registry is reachable,
# run `eval "$(scripts/airgap-images)"` first (.ci/run does).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# testcontainers' reaper image cannot be pulled everywhere; our fixtures stop what they start.
export TESTCONTAINERS_RYUK_DISABLED ?= true
# Reach test containers through their published ports on loopback.
export TC_HOST ?= 127.0.0.1

.PHONY: test lint install run down benchmark e2e-kind clean

test: install lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check --quiet -e ".[dev]"
	touch $@

run:
	docker compose up --build

down:
	docker compose down

benchmark: install
	$(BIN)/python scripts/benchmark

e2e-kind: install
	E2E_BACKEND=kind $(BIN)/pytest tests/e2e/test_scenarios.py tests/e2e/kind_only tests/e2e/test_readme.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
