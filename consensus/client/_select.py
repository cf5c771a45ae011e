"""Choose endpoints: round robin, random or smooth weighted round robin, skipping ones that are down.

Pure bookkeeping (time and randomness are passed in). An endpoint that fails is marked down for
a backoff that doubles with each consecutive failure (up to a cap); once the backoff has passed
it is *half-open*: the client probes it before trusting it again, and one success marks it up.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

STRATEGIES = ("round_robin", "random", "weighted")


def normalize_url(url: str) -> str:
    """Return ``url`` with a scheme and without a trailing slash."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


@dataclass
class Endpoint:
    url: str
    weight: int = 1
    down_until: float = 0.0
    failures: int = 0
    current: int = 0  # smooth weighted round robin state

    def is_up(self, now: float) -> bool:
        return now >= self.down_until

    def half_open(self, now: float) -> bool:
        """True when it failed before and its backoff is over: probe it before use."""
        return self.failures > 0 and now >= self.down_until


class EndpointPool:
    """The endpoints a client may talk to, with their health."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        strategy: str = "round_robin",
        weights: Sequence[int] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float],
        backoff: float = 0.5,
        max_backoff: float = 10.0,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
        if not urls:
            raise ValueError("at least one endpoint is needed")
        if weights is not None and (len(weights) != len(urls) or any(w <= 0 for w in weights)):
            raise ValueError("weights must be positive, one per endpoint")
        self.strategy = strategy
        self.endpoints: list[Endpoint] = []
        for i, url in enumerate(urls):
            self.add(url, weights[i] if weights else 1)
        self._rng = rng or random.Random()
        self._clock = clock
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._next = 0

    def add(self, url: str, weight: int = 1) -> Endpoint:
        url = normalize_url(url)
        for endpoint in self.endpoints:
            if endpoint.url == url:
                return endpoint
        endpoint = Endpoint(url, weight)
        self.endpoints.append(endpoint)
        return endpoint

    def get(self, url: str) -> Endpoint | None:
        url = normalize_url(url)
        return next((e for e in self.endpoints if e.url == url), None)

    def pick(self, exclude: Sequence[str] = ()) -> Endpoint:
        """Return the next endpoint by strategy among those up (and not excluded)."""
        now = self._clock()
        candidates = [e for e in self.endpoints if e.url not in exclude and e.is_up(now)]
        if not candidates:
            # Everything is down: try the one whose backoff ends first rather than give up.
            pool = [e for e in self.endpoints if e.url not in exclude] or self.endpoints
            return min(pool, key=lambda e: e.down_until)
        if self.strategy == "random":
            return self._rng.choice(candidates)
        if self.strategy == "weighted":
            total = 0
            for endpoint in candidates:
                endpoint.current += endpoint.weight
                total += endpoint.weight
            best = max(candidates, key=lambda e: e.current)
            best.current -= total
            return best
        self._next += 1
        return candidates[(self._next - 1) % len(candidates)]

    def mark_down(self, url: str) -> None:
        endpoint = self.get(url)
        if endpoint is None:
            return
        endpoint.failures += 1
        delay = min(self._max_backoff, self._backoff * 2 ** min(endpoint.failures - 1, 30))
        endpoint.down_until = self._clock() + delay

    def mark_up(self, url: str) -> None:
        endpoint = self.get(url)
        if endpoint is not None:
            endpoint.failures = 0
            endpoint.down_until = 0.0
