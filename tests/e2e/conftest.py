"""The end-to-end backend: docker compose by default (CI), kind with E2E_BACKEND=kind."""

import os

import pytest

from tests.e2e.backends import backend_from_env, verdict


def left_out(backend: str | None) -> list[str]:
    """Tests that only a kind cluster can run (a rolling update) are collected with
    E2E_BACKEND=kind only, so that a compose run (CI, the default) neither skips nor fakes them."""
    return [] if backend == "kind" else ["kind_only"]


collect_ignore = left_out(os.environ.get("E2E_BACKEND"))


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "needs(*features): what a scenario needs of the backend (persistence); skipped, with "
        "the reason, only on a kind overlay the user chose that lacks it (backends.verdict)",
    )


@pytest.fixture(autouse=True)
def _the_backend_offers_what_the_test_needs(request):
    marker = request.node.get_closest_marker("needs")
    if marker is None:
        return
    decision = verdict(request.getfixturevalue("backend"), marker.args)
    if decision is not None:
        outcome, reason = decision
        (pytest.skip if outcome == "skip" else pytest.fail)(reason)


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
