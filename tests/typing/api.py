"""Type-checked (``mypy --strict``), never executed: the public API's typing contract."""

from __future__ import annotations

from typing import assert_type

import resilient as rs


def retry_keeps_signatures() -> None:
    retry = rs.Retry(attempts=3, backoff=rs.Backoff.exponential(0.1, 5.0), retry_on=OSError)

    @retry
    def get(x: int, *, y: str = "") -> str:
        return f"{x}{y}"

    @retry
    async def aget(x: int) -> bytes:
        return b"x"

    assert_type(get(1, y="a"), str)
    assert_type(retry.call(get, 1), str)
    get("no")  # type: ignore[arg-type]
    retry.call(get, "no")  # type: ignore[arg-type]

    async def use() -> None:
        assert_type(await aget(1), bytes)
        assert_type(await retry.acall(aget, 2), bytes)


def pipeline_composes() -> None:
    pipeline = rs.Pipeline(rs.Timeout("2s"), rs.Retry(), rs.Fallback("x"), name="p")
    assert_type(pipeline.call(len, "abc"), int)
    inner: rs.Policy = pipeline
    assert_type(inner.call(str.upper, "a"), str)
    left: float | None = rs.remaining()
    del left


def errors_have_attributes(err: rs.RejectedError, cfg: rs.ConfigError) -> None:
    assert_type(err.retry_after, float | None)
    assert_type(err.policy, str)
    assert_type(cfg.path, str)


def adaptive_policies_keep_signatures() -> None:
    limit = rs.AdaptiveConcurrency(rs.AIMD(latency_threshold="200ms"), max_limit=100)
    throttle = rs.Throttle(1.5, window="1m")

    @limit
    def get(x: int) -> str:
        return str(x)

    @throttle
    async def aget(x: int) -> bytes:
        return b"x"

    assert_type(get(1), str)
    assert_type(throttle.call(get, 1), str)
    get("no")  # type: ignore[arg-type]
    assert_type(limit.stats(), rs.AdaptiveConcurrencyStats)
    assert_type(throttle.stats().reject_probability, float)
    permit = limit.try_acquire()
    if permit is not None:
        permit.success()
    rs.AdaptiveConcurrency("vegas")
    rs.AdaptiveConcurrency("tcp")  # type: ignore[arg-type]

    async def use() -> None:
        assert_type(await aget(1), bytes)
        assert_type(await limit.acall(aget, 2), bytes)
