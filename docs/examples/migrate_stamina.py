"""stamina -> resilient."""

from __future__ import annotations


class Upstream:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def get(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("upstream unavailable")
        return "ok"


# --8<-- [start:before]
import stamina


@stamina.retry(
    on=ConnectionError,
    attempts=4,
    timeout=10.0,
    wait_initial=0.1,
    wait_max=2.0,
    wait_jitter=0.0,
)
def call_before(upstream: Upstream) -> str:
    return upstream.get()


# --8<-- [end:before]


# --8<-- [start:after]
import resilient as rs


@rs.Retry(
    attempts=4,
    retry_on=ConnectionError,
    deadline=10.0,  # stamina's timeout
    backoff=rs.Backoff.exponential(initial=0.1, maximum=2.0, jitter="none"),
)
def call_after(upstream: Upstream) -> str:
    return upstream.get()


# --8<-- [end:after]


def configure_test_mode() -> None:
    # --8<-- [start:testing]
    from resilient.testing import set_testing

    stamina.set_testing(True, attempts=1)  # before
    set_testing(True, attempts=1)  # after: no sleeps, one attempt, for every Retry
    # --8<-- [end:testing]


if __name__ == "__main__":
    from resilient.testing import set_testing

    configure_test_mode()
    stamina.set_testing(True, attempts=3)
    set_testing(True, attempts=3)
    theirs, ours = Upstream(2), Upstream(2)
    assert call_before(theirs) == call_after(ours) == "ok"
    assert theirs.calls == ours.calls == 3
