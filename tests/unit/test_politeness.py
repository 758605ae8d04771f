from aggregator.politeness import LocalHostLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_and_in_flight_per_host() -> None:
    clock = Clock()
    limiter = LocalHostLimiter(per_minute=3, concurrent=2, clock=clock)
    first, second = limiter.acquire("a"), limiter.acquire("a")
    assert first and second and limiter.acquire("a") is None  # two in flight
    assert limiter.acquire("b") is not None  # hosts are separate
    limiter.release("a", first)
    third = limiter.acquire("a")
    assert third is not None
    limiter.release("a", second)
    assert limiter.acquire("a") is None  # three this minute
    clock.now += 60.5
    assert limiter.acquire("a") is not None  # a new minute
