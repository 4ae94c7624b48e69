"""A rolling update of the app tier under load, on kind only (`make e2e-kind`): compose has no
rolling update (recreating a container is a restart, with the downtime of one), so there is no
honest equivalent to run in CI. tests/e2e/test_kind_plan.py checks the plan and the judgement
offline; this runs them on a real cluster."""

from tests.e2e.kind import KindBackend, rollout_problems


def test_no_request_fails_while_the_app_tier_rolls(backend):
    assert isinstance(backend, KindBackend), "run with E2E_BACKEND=kind (make e2e-kind)"
    result = backend.rolling_update_under_load()
    assert rollout_problems(result) == [], result["output"][-3000:]
    assert result["summary"]["failed"] == 0
