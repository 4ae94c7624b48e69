import pytest
from microservices_server.errors import ApiError
from microservices_server.validation import parse_idempotency_key, parse_increment

JSON = "application/json"


@pytest.mark.parametrize(
    ("body", "ctype", "expected"),
    [
        (b"", None, 1),
        (b"", "text/plain", 1),
        (b'{"increment": 5}', JSON, 5),
        (b'{"increment": 1000}', "application/json; charset=utf-8", 1000),
        (b' {"increment":1} ', JSON, 1),
    ],
)
def test_accepted(body, ctype, expected):
    assert parse_increment(body, ctype, 1000) == expected


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (b"{", JSON, 400),
        (b"5", JSON, 400),
        (b"[1]", JSON, 400),
        (b"{}", JSON, 400),
        (b'{"increment": "5"}', JSON, 400),
        (b'{"increment": true}', JSON, 400),
        (b'{"increment": 1.0}', JSON, 400),
        (b'{"increment": 0}', JSON, 400),
        (b'{"increment": -3}', JSON, 400),
        (b'{"increment": 1001}', JSON, 400),
        (b'{"increment": NaN}', JSON, 400),
        (b'{"increment": 1, "extra": 2}', JSON, 400),
        (b'{"increment": 1, "increment": 900}', JSON, 400),
        (b"\xff\xfe", JSON, 400),
        (b"[" * 100_000, JSON, 400),
        (b'{"increment": 5}', "text/plain", 415),
        (b'{"increment": 5}', None, 415),
        (b"increment=5", "application/x-www-form-urlencoded", 415),
    ],
)
def test_rejected(body, ctype, status):
    with pytest.raises(ApiError) as info:
        parse_increment(body, ctype, 1000)
    assert info.value.status == status
    assert info.value.message


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, "caf\u00e9", "a,b", "a, b"])
def test_bad_idempotency_keys(key):
    with pytest.raises(ApiError) as info:
        parse_idempotency_key(key)
    assert info.value.status == 400


def test_good_idempotency_key():
    assert parse_idempotency_key("0b8f9a2e-5d3c-4c1e-9f00-1a2b3c4d5e6f")
    assert parse_idempotency_key(None) is None
