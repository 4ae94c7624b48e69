"""PYPY_GC_MAX read as PyPy reads it: where PyPy sets no limit the pacer does not start, and
no value a user may set stops a worker from starting (gc_pacing.py)."""

import pytest
from microservices_server.gc_pacing import heap_limit


@pytest.mark.parametrize(
    ("value", "limit"),
    [
        ("256MB", 256 * 2**20),
        ("96mb", 96 * 2**20),
        ("1.5GB", int(1.5 * 2**30)),
        ("300000", 300_000),
        ("1e9", 1_000_000_000),
        ("512k", 512 * 2**10),
    ],
)
def test_a_limit_pypy_reads_is_read_the_same(value, limit):
    assert heap_limit(value) == limit


@pytest.mark.parametrize(
    "value", [None, "", "0", "abc", ".", "1..5MB", "256MB ", "-1MB", "inf", "nan", "1e400"]
)
def test_where_pypy_sets_no_limit_there_is_none(value):
    assert heap_limit(value) is None
