"""Endpoint selection and failure detection, with an injected clock and random source."""

from __future__ import annotations

import random

import pytest

from consensus.client import EndpointPool, normalize_url


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pool(strategy="round_robin", weights=None, n=3, clock=None):
    urls = [f"http://127.0.0.1:{8001 + i}" for i in range(n)]
    return EndpointPool(urls, strategy=strategy, weights=weights, rng=random.Random(7), clock=clock or Clock(), backoff=1.0, max_backoff=4.0)


def short(url: str) -> str:
    return url[-4:]


def test_round_robin_cycles_in_order():
    p = pool()
    assert [short(p.pick().url) for _ in range(6)] == ["8001", "8002", "8003", "8001", "8002", "8003"]


def test_random_is_seeded_and_uses_every_endpoint():
    p = pool("random")
    seen = [short(p.pick().url) for _ in range(60)]
    assert set(seen) == {"8001", "8002", "8003"}
    q = pool("random")
    assert seen == [short(q.pick().url) for _ in range(60)]


def test_smooth_weighted_round_robin_matches_nginx():
    p = pool("weighted", weights=[5, 1, 1])
    # nginx's example: weights {a:5, b:1, c:1} give a a b a c a a, smoothly interleaved.
    assert [short(p.pick().url) for _ in range(7)] == ["8001", "8001", "8002", "8001", "8003", "8001", "8001"]
    counts = {}
    for _ in range(700):
        url = short(p.pick().url)
        counts[url] = counts.get(url, 0) + 1
    assert counts == {"8001": 500, "8002": 100, "8003": 100}


def test_a_failed_endpoint_is_skipped_then_half_open_after_a_doubling_backoff():
    clock = Clock()
    p = pool(clock=clock)
    down = "http://127.0.0.1:8002"
    p.mark_down(down)
    assert down not in {p.pick().url for _ in range(6)}
    clock.now += 1.01  # first backoff: 1 s
    endpoint = p.get(down)
    assert endpoint.half_open(clock()) and endpoint.is_up(clock())
    p.mark_down(down)  # the probe failed: 2 s this time
    clock.now += 1.5
    assert not p.get(down).is_up(clock())
    clock.now += 0.6
    assert p.get(down).is_up(clock())
    for _ in range(5):
        p.mark_down(down)
    assert p.get(down).down_until - clock() == pytest.approx(4.0)  # capped
    p.mark_up(down)
    assert not p.get(down).half_open(clock()) and p.get(down).failures == 0


def test_when_everything_is_down_the_soonest_back_is_tried():
    clock = Clock()
    p = pool(clock=clock)
    for url in ("http://127.0.0.1:8001", "http://127.0.0.1:8003"):
        p.mark_down(url)
    p.mark_down("http://127.0.0.1:8002")
    p.mark_down("http://127.0.0.1:8002")
    assert short(p.pick().url) == "8001"


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError):
        pool("fastest")
    with pytest.raises(ValueError):
        pool("weighted", weights=[1, 0, 1])
    with pytest.raises(ValueError):
        EndpointPool([], clock=Clock())


def test_urls_are_normalized():
    assert normalize_url("127.0.0.1:8001/") == "http://127.0.0.1:8001"
    assert normalize_url(" https://h:1 ") == "https://h:1"
