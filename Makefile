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

.PHONY: test lint ruff install lock lint-env lint-lock sbom push run down benchmark e2e-kind clean

# Every test (tests/lint among them), after ruff.
test: install ruff
	$(BIN)/pytest

# Every linter, and only them (about 20 s): ruff, then checkov, hadolint, zizmor, bandit and
# check-jsonschema as tests/lint runs them, the skip list of checkov applied, without the tests
# that plant a defect to show each linter bites (make test runs those).
lint: ruff
	$(BIN)/pytest -q tests/lint/test_linters.py tests/lint/test_renovate.py -k "not planted"

ruff: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

install: $(VENV)/.installed lint-env

# Exactly the packages of requirements/dev.txt, each checked against its hash; then this
# project itself, editable, built by the locked setuptools (requirements/build.txt).
$(VENV)/.installed: pyproject.toml requirements/dev.txt requirements/build.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check --quiet --require-hashes \
		-r requirements/build.txt -r requirements/dev.txt
	$(BIN)/pip install --disable-pip-version-check --quiet --no-deps --no-build-isolation -e .
	touch $@

# Compile every lock in requirements/ again from pyproject.toml (uv, from the dev extra).
lock: $(VENV)/.installed
	scripts/lock

# The linters (checkov, hadolint, zizmor, bandit, check-jsonschema: tests/lint runs them) and
# cyclonedx-bom (scripts/sbom) in environments of their own, each from its lock in tools/lint/
# with hashes: checkov's pins cannot live beside the dev extra's, nor beside cyclonedx-bom's.
lint-env: .venv-lint/.installed .venv-sbom/.installed

.venv-%/.installed: tools/lint/%.txt
	rm -rf .venv-$*
	$(PYTHON) -m venv .venv-$*
	echo '*' > .venv-$*/.gitignore
	.venv-$*/bin/pip install --disable-pip-version-check --quiet --require-hashes --no-deps \
		--only-binary=:all: -r $<
	touch $@

# Compile tools/lint/*.txt again from tools/lint/*.in (with the uv of .venv-lint).
lint-lock: lint-env
	tools/lint/lock

# CycloneDX SBOMs of the images' Python environments (/opt/venv), built first, in build/sbom/.
sbom: lint-env
	scripts/sbom

# REGISTRY=registry.example.com/team make push: the three images, tagged with the project's
# version (scripts/version), pushed to $(REGISTRY)/{server,counter,poller} (README: "Your own
# registry"). Without REGISTRY it stops before building anything.
push:
	scripts/push

run:
	docker compose up --build

down:
	docker compose down

# The images as this checkout builds them (Docker's cache: quick when nothing changed), measured
# side by side with Node.js (README, "Measured"); as root: each image runs as a chroot.
benchmark: install
	$(BIN)/python scripts/benchmark --build

e2e-kind: install
	E2E_BACKEND=kind $(BIN)/pytest tests/e2e/test_scenarios.py tests/e2e/kind_only tests/e2e/test_readme.py

clean:
	rm -rf $(VENV) .venv-lint .venv-sbom .pytest_cache .ruff_cache .hypothesis
