import random

import pytest
from microservices_common.backoff import Backoff


def test_delays_grow_then_stay_under_the_cap():
    backoff = Backoff(base=0.1, cap=2.0, rng=random.Random(7))
    delays = [d for _, d in zip(range(40), backoff.delays(), strict=False)]
    for attempt, delay in enumerate(delays):
        ceiling = min(2.0, 0.1 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 2.0


def test_jitter_spreads_clients():
    first = {Backoff(0.1, 5, random.Random(seed)).delay(3) for seed in range(20)}
    assert len(first) == 20


def test_rejects_nonsense():
    with pytest.raises(ValueError):
        Backoff(base=0, cap=1)
    with pytest.raises(ValueError):
        Backoff(base=2, cap=1)


def test_huge_attempt_numbers_do_not_overflow():
    assert Backoff(0.1, 3).delay(10_000) <= 3
