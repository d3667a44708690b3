"""tenacity -> resilient: the common setups, rewritten."""

from __future__ import annotations

import logging
from dataclasses import dataclass


@dataclass
class Response:
    status: int


class Client:
    """Stands in for an HTTP client: scripted answers, counted calls."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls = 0

    def get(self, path: str = "/") -> Response:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, Response)
        return answer


logger = logging.getLogger("app")

# --8<-- [start:before-basic]
import tenacity


@tenacity.retry(
    stop=tenacity.stop_after_attempt(4),
    wait=tenacity.wait_exponential(multiplier=0.2, max=2),
    retry=tenacity.retry_if_exception_type(ConnectionError),
    reraise=True,
)
def fetch_before(client: Client) -> Response:
    return client.get("/users/1")


# --8<-- [end:before-basic]


# --8<-- [start:after-basic]
import resilient as rs

fetch_retry = rs.Retry(
    attempts=4,  # stop_after_attempt(4): all tries, the first included
    backoff=rs.Backoff.exponential(initial=0.2, maximum=2.0, jitter="none"),
    retry_on=ConnectionError,
)  # the last exception is always re-raised: no RetryError, no reraise=True


@fetch_retry
def fetch_after(client: Client) -> Response:
    return client.get("/users/1")


# --8<-- [end:after-basic]


# --8<-- [start:before-results]
@tenacity.retry(
    retry=tenacity.retry_if_result(lambda response: response.status == 503),
    stop=tenacity.stop_after_attempt(5) | tenacity.stop_after_delay(10),
    wait=tenacity.wait_random_exponential(multiplier=0.5, max=4),
    before_sleep=tenacity.before_sleep_log(logger, logging.WARNING),
)
def report_before(client: Client) -> Response:
    return client.get("/report")


# --8<-- [end:before-results]


# --8<-- [start:after-results]
report_retry = rs.Retry(
    attempts=5,
    deadline=10.0,  # stop_after_delay: no attempt starts after it
    backoff=rs.Backoff.exponential(initial=0.5, maximum=4.0, jitter="full"),
    retry_if=lambda response: response.status == 503,
    retry_on=(),  # retry_if_result alone: exceptions are not retried
)  # each retry is logged on the "resilient" logger (INFO): no hook needed


@report_retry
def report_after(client: Client) -> Response:
    return client.get("/report")


# --8<-- [end:after-results]


# --8<-- [start:before-async]
@tenacity.retry(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_fixed(1), reraise=True)
async def ping_before(client: Client) -> Response:
    return client.get("/ping")


# --8<-- [end:before-async]


# --8<-- [start:after-async]
@rs.Retry(attempts=3, backoff=rs.Backoff.constant(1), retry_on=Exception)
async def ping_after(client: Client) -> Response:  # the same decorator serves async def
    return client.get("/ping")


# --8<-- [end:after-async]


if __name__ == "__main__":
    import asyncio

    from resilient.testing import set_testing

    no_sleep = {"sleep": lambda seconds: None}
    with set_testing(True, attempts=None):
        for before, after in ((fetch_before, fetch_after), (report_before, report_after)):
            theirs = Client(ConnectionError(), Response(503), Response(200))
            ours = Client(ConnectionError(), Response(503), Response(200))
            try:
                before.retry_with(**no_sleep)(theirs)  # type: ignore[attr-defined]
            except ConnectionError:
                pass
            try:
                after(ours)
            except ConnectionError:
                pass
            assert theirs.calls == ours.calls
        assert asyncio.run(ping_after(Client(KeyError(), Response(200)))).status == 200
