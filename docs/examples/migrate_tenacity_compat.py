"""tenacity -> resilient, keeping the tenacity strategies you already have."""

from __future__ import annotations

import tenacity


def flaky_factory(failures: int) -> tuple[list[int], object]:
    calls: list[int] = []

    def fetch() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise ConnectionError("reset")
        return "ok"

    return calls, fetch


# --8<-- [start:strategies]
from tenacity import retry_if_exception_type, stop_after_attempt, wait_exponential

from resilient.compat.tenacity import retry_from_tenacity

retry = retry_from_tenacity(
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=0.5, max=8),
    retry=retry_if_exception_type(ConnectionError),
    name="inventory",  # any resilient.Retry argument: clock=, listeners=, budget=...
)
# retry.call(fn, ...), await retry.acall(afn, ...), @retry, or in a Pipeline
# --8<-- [end:strategies]


# --8<-- [start:retrying]
from resilient.compat.tenacity import from_retrying


@tenacity.retry(stop=stop_after_attempt(3), wait=tenacity.wait_fixed(2), reraise=True)
def legacy_fetch() -> str:
    return "ok"


same_policy = from_retrying(legacy_fetch)  # or from_retrying(tenacity.Retrying(...))
# --8<-- [end:retrying]


if __name__ == "__main__":
    import resilient as rs
    from resilient.testing import FakeClock

    assert isinstance(retry, rs.Retry)
    clock = FakeClock()
    calls, fetch = flaky_factory(3)
    assert (
        retry_from_tenacity(
            stop=stop_after_attempt(5),
            wait=wait_exponential(multiplier=0.5, max=8),
            retry=retry_if_exception_type(ConnectionError),
            clock=clock,
        ).call(fetch)
        == "ok"
    )  # type: ignore[arg-type]
    assert (len(calls), clock.sleeps) == (4, [0.5, 1.0, 2.0])
    assert same_policy.config.attempts == 3
