"""Any POST body either increments by exactly what it asked for, or is rejected with a 4xx
and leaves the count as it was."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_app

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=6,
)
bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(["increment", "Increment", "inc"]), json_values, max_size=2
    ).map(lambda v: json.dumps(v).encode()),
    st.integers(-5, 1200).map(lambda k: json.dumps({"increment": k}).encode()),
)
content_types = st.sampled_from(
    ["application/json", "text/plain", None, "application/json; charset=utf-8"]
)


def expected_increment(body: bytes, content_type: str | None) -> int | None:
    """The rule, written independently of the server's code."""
    if body == b"":
        return 1
    if content_type is None or not content_type.startswith("application/json"):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or list(data) != ["increment"]:
        return None
    k = data["increment"]
    if type(k) is not int or not 1 <= k <= 1000:
        return None
    if body.count(b'"increment"') != 1:
        return None  # a duplicate key
    return k


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, content_type=content_types)
def test_post_bodies(redis_url, body, content_type):
    client = make_app(redis_url).test_client()
    before = client.get("/").get_json()["count"]
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/", data=body, headers=headers)
    after = client.get("/").get_json()["count"]
    expected = expected_increment(body, content_type)
    if expected is None:
        assert 400 <= response.status_code < 500, (response.status_code, body)
        assert after == before
    else:
        assert response.status_code == 200, (response.get_json(), body)
        assert response.get_json() == {"count": before + expected}
        assert after == before + expected
