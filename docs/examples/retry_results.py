"""Retry on a returned value (an HTTP 503), honouring the server's Retry-After, under a deadline."""

from __future__ import annotations

from dataclasses import dataclass

import resilient as rs
from resilient.testing import FakeClock

clock = FakeClock()


@dataclass
class Response:
    status: int
    retry_after: float | None = None  # what a Retry-After header said, in seconds
    closed: bool = False

    def close(self) -> None:
        self.closed = True


answers = [Response(503, retry_after=2.0), Response(503), Response(200)]
seen: list[Response] = []


def get_report() -> Response:
    seen.append(answers[len(seen)])
    return seen[-1]


# --8<-- [start:example]
retry = rs.Retry(
    attempts=5,
    backoff=rs.Backoff.exponential(initial=0.5, jitter="none"),
    retry_if=lambda response: response.status in (429, 502, 503, 504),
    deadline="30s",  # no sleep ever runs past it
    max_retry_after="60s",  # the cap on a server's hint
    clock=clock,
)
response = retry.call(get_report)
assert response.status == 200
assert clock.sleeps == [2.0, 1.0]  # the hint first, then the backoff's second delay
assert seen[0].closed and seen[1].closed  # discarded responses are closed
# --8<-- [end:example]

if __name__ == "__main__":
    # When the deadline cannot fit another try, the last result is returned as is.
    late = rs.Retry(attempts=5, retry_if=lambda r: r.status == 503, deadline=1.0, clock=FakeClock())
    busy = Response(503, retry_after=5.0)
    assert late.call(lambda: busy) is busy
    assert not busy.closed
