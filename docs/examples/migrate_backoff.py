"""backoff -> resilient."""

from __future__ import annotations


class Feed:
    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls = 0

    def poll(self) -> object:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, BaseException):
            raise answer
        return answer


# --8<-- [start:before]
import backoff


@backoff.on_exception(
    backoff.expo, ConnectionError, max_tries=5, max_time=30, factor=0.1, max_value=2.0
)
def poll_before(feed: Feed) -> object:
    return feed.poll()


@backoff.on_predicate(backoff.constant, lambda value: value is None, interval=1, max_tries=3)
def wait_for_job_before(feed: Feed) -> object:
    return feed.poll()


# --8<-- [end:before]


# --8<-- [start:after]
import resilient as rs


@rs.Retry(
    attempts=5,  # max_tries
    deadline=30.0,  # max_time
    backoff=rs.Backoff.exponential(initial=0.1, maximum=2.0),  # expo, full jitter
    retry_on=ConnectionError,
)
def poll_after(feed: Feed) -> object:
    return feed.poll()


@rs.Retry(
    attempts=3,
    backoff=rs.Backoff.constant(1, jitter="full"),  # backoff jitters constant waits too
    retry_if=lambda value: value is None,  # on_predicate
    retry_on=(),  # on_predicate does not retry exceptions
)
def wait_for_job_after(feed: Feed) -> object:
    return feed.poll()


# --8<-- [end:after]

if __name__ == "__main__":
    from unittest import mock

    from resilient.testing import set_testing

    with mock.patch("backoff._sync.time.sleep"), set_testing(True, attempts=None):
        for before, after in ((poll_before, poll_after), (wait_for_job_before, wait_for_job_after)):
            results = []
            for fn in (before, after):
                feed = Feed(ConnectionError(), None, "job")
                try:
                    results.append((fn(feed), feed.calls))
                except ConnectionError:
                    results.append(("raised", feed.calls))
            assert results[0] == results[1]
