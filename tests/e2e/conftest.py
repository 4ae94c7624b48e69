"""The end-to-end backend: docker compose by default (CI), kind with E2E_BACKEND=kind."""

import pytest

from tests.e2e.backends import backend_from_env


@pytest.fixture(scope="session")
def backend(request):
    """Started once for the session. Its set-up (images, a cluster) is not counted against
    the first test's timeout: pytest-timeout times test functions only (pyproject.toml)."""
    backend = backend_from_env()
    try:
        backend.start()
    except BaseException:
        backend.teardown(failed=True)  # keep what the failed set-up needs to be understood
        raise
    try:
        yield backend
    finally:
        backend.teardown(failed=request.session.testsfailed > 0)
