"""The end-to-end backend: docker compose by default (CI), kind with E2E_BACKEND=kind."""

import pytest

from tests.e2e.backends import backend_from_env


@pytest.fixture(scope="session")
def backend():
    backend = backend_from_env()
    try:
        backend.start()
        yield backend
    finally:
        backend.teardown()
