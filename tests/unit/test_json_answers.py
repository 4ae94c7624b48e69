"""The JSON answers written by orjson (json_answers.py) are the bytes Flask's own provider
writes, for every shape the server answers with; where the two spell a value differently (text
outside ASCII, small floats, NaN and infinity), the test says how."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest
from flask import Flask
from microservices_server import json_answers

ANSWERS = [
    {"count": 0},
    {"count": 2**63 - 1},  # the largest count (store.py refuses to pass it)
    {"count": -5},
    {"error": "send an empty body or application/json"},
    {"error": 'Idempotency-Key "a\\b" \t not allowed'},  # quotes, backslash, control
    # /api/status: nested, null, floats, booleans, lists; keys out of order (sorted out).
    {
        "tiers": {"data": {"status": "up", "latency_ms": 0.3, "replicas": []}},
        "count": None,
        "rate": 12.5,
        "history": [0, 3, 7],
        "app": {"draining": False, "faults": None},
    },
    {1: "one", 2: "two"},  # json.dumps turns int keys into strings: so must orjson
]


def answer_bytes(app: Flask, value) -> bytes:
    with app.app_context():
        response = app.make_response((value, 200))
        assert response.mimetype == "application/json"
        return response.get_data()


def test_cpython_answers_with_orjson():
    """orjson is in the server's lock for CPython (PyPy has no build of it)."""
    app = Flask(__name__)
    json_answers.install(app)
    expected = platform.python_implementation() == "CPython"
    assert isinstance(app.json, json_answers.OrjsonProvider) is expected


def test_without_orjson_flask_answers():
    """As under PyPy: orjson cannot be imported, the server keeps Flask's own provider."""
    code = (
        "import sys; sys.modules['orjson'] = None\n"  # `import orjson` raises ImportError
        "from flask import Flask\n"
        "from microservices_server import json_answers\n"
        "app = Flask('x'); json_answers.install(app)\n"
        "print(type(app.json).__name__)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "DefaultJSONProvider"


@pytest.mark.parametrize("value", ANSWERS)
def test_the_bytes_are_flasks(value):
    ours = Flask(__name__)
    json_answers.install(ours)
    assert answer_bytes(ours, value) == answer_bytes(Flask(__name__), value)


@pytest.mark.parametrize(
    "value, ours, flasks",
    [
        ({"ratio": 1e-05}, b'{"ratio":0.00001}\n', b'{"ratio":1e-05}\n'),
        # JSON has no infinity: Flask writes a token no JSON reader takes, orjson null.
        ({"age": float("inf")}, b'{"age":null}\n', b'{"age":Infinity}\n'),
    ],
)
def test_values_spelled_otherwise_read_the_same_or_better(value, ours, flasks):
    app = Flask(__name__)
    json_answers.install(app)
    assert answer_bytes(app, value) == ours
    assert answer_bytes(Flask(__name__), value) == flasks


@pytest.mark.parametrize("value", [{"history": [2**64]}, {"history": [-(2**63) - 1]}])
def test_what_orjson_cannot_write_flask_still_answers(value):
    """An integer past 64 bits (a client can write one into Redis' history hash): the same
    answer as Flask's, not a 500."""
    ours = Flask(__name__)
    json_answers.install(ours)
    assert answer_bytes(ours, value) == answer_bytes(Flask(__name__), value)


def test_text_outside_ascii_is_utf8_and_reads_the_same():
    value = {"error": "caf\u00e9 \u2603 \U0001f600"}
    ours = Flask(__name__)
    json_answers.install(ours)
    body, flasks = answer_bytes(ours, value), answer_bytes(Flask(__name__), value)
    assert body == '{"error":"caf\u00e9 \u2603 \U0001f600"}\n'.encode()
    assert json.loads(body) == json.loads(flasks) == value
