"""Success-path overhead of Retry, Timeout and Pipeline(Timeout, Retry) against
tenacity, stamina and backoff, sync and async, in one run.

Overhead = ns per decorated call minus ns per bare call of the same function.
"""

from __future__ import annotations

import backoff
import stamina
import tenacity

import resilient as rs

from ._harness import Table, ameasure, measure, ns, ratio, verdict

NAME = "retry"


def target(x: int) -> int:
    return x + 1


async def atarget(x: int) -> int:
    return x + 1


def _sync(quick: bool) -> Table:
    retry = rs.Retry(attempts=3, retry_on=OSError)
    timeout = rs.Timeout(5.0)
    pipeline = rs.Pipeline(rs.Timeout(5.0), rs.Retry(attempts=3, retry_on=OSError))
    candidates = {
        "resilient Retry": retry(target),
        "resilient Timeout (sync: deadline only)": timeout(target),
        "resilient Pipeline(Timeout, Retry)": pipeline(target),
        "backoff.on_exception": backoff.on_exception(backoff.expo, OSError, max_tries=3)(target),
        "stamina.retry": stamina.retry(on=OSError, attempts=3)(target),
        "tenacity.retry": tenacity.retry(
            stop=tenacity.stop_after_attempt(3),
            retry=tenacity.retry_if_exception_type(OSError),
            wait=tenacity.wait_exponential(),
        )(target),
    }
    bare = measure(lambda: target(1), quick=quick)
    times = {name: measure(lambda f=f: f(1), quick=quick) - bare for name, f in candidates.items()}
    return _table("sync", bare, times)


def _async(quick: bool) -> Table:
    retry = rs.Retry(attempts=3, retry_on=OSError)
    timeout = rs.Timeout(5.0)
    pipeline = rs.Pipeline(rs.Timeout(5.0), rs.Retry(attempts=3, retry_on=OSError))
    candidates = {
        "resilient Retry": retry(atarget),
        "resilient Timeout (async: cancel scope)": timeout(atarget),
        "resilient Pipeline(Timeout, Retry)": pipeline(atarget),
        "backoff.on_exception": backoff.on_exception(backoff.expo, OSError, max_tries=3)(atarget),
        "stamina.retry": stamina.retry(on=OSError, attempts=3)(atarget),
        "tenacity.retry": tenacity.retry(
            stop=tenacity.stop_after_attempt(3),
            retry=tenacity.retry_if_exception_type(OSError),
            wait=tenacity.wait_exponential(),
        )(atarget),
    }
    bare = ameasure(lambda: atarget(1), quick=quick)
    times = {name: ameasure(lambda f=f: f(1), quick=quick) - bare for name, f in candidates.items()}
    return _table("async", bare, times)


def _table(flavour: str, bare: float, times: dict[str, float]) -> Table:
    table = Table(
        f"Retry / Timeout success path, {flavour} (overhead over a bare call of {ns(bare)} ns)",
        ["policy", "overhead ns/call", "vs backoff", "vs tenacity"],
    )
    for name, overhead in times.items():
        table.add(
            name,
            ns(overhead),
            ratio(overhead, times["backoff.on_exception"]),
            ratio(overhead, times["tenacity.retry"]),
        )
    ours = times["resilient Retry"]
    table.notes.append(
        "target: resilient Retry overhead vs backoff "
        + verdict(ours, times["backoff.on_exception"], 0.2)
        + "; vs tenacity "
        + verdict(ours, times["tenacity.retry"], 0.03)
    )
    return table


def run(quick: bool) -> list[Table]:
    return [_sync(quick), _async(quick)]
