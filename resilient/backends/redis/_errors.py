"""Redis failures as :class:`~resilient.BackendError`: the one place they are translated.

Everything a store sends to Redis goes through :func:`backend_error` when it
fails, so callers see one exception type whatever the client raised (redis-py's
``ConnectionError``/``TimeoutError``/``ResponseError``, a cluster error, an
``OSError``...), with the original as ``__cause__`` and no credentials in the
message. :func:`is_outage` tells a Redis that is unreachable or switching over
(worth failing over from) from one that answered with an error about this
request (a script error, a key of the wrong type).
"""

from __future__ import annotations

from ..._errors import BackendError

__all__ = ["backend_error", "is_outage"]


def backend_error(exc: BaseException, backend: str, operation: str) -> BackendError:
    """A :class:`~resilient.BackendError` for *exc* (set it as ``__cause__`` when raising)."""
    if isinstance(exc, BackendError):
        return exc
    text = str(exc)
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return BackendError(backend, operation, detail)


def is_outage(exc: BaseException) -> bool:
    """Whether *exc* means Redis cannot take decisions right now (down, unreachable,
    too slow, loading, read-only or failing over), rather than a reply about this call."""
    from redis import exceptions as e

    if isinstance(exc, e.ResponseError):
        # Replies that say "not now, not here": a replica, a failover, a full
        # server. Any other error reply is about the request itself.
        return isinstance(
            exc,
            e.ReadOnlyError
            | e.ClusterDownError
            | e.TryAgainError
            | e.AskError
            | e.OutOfMemoryError
            | e.BusyLoadingError,
        )
    return isinstance(exc, e.RedisError | e.RedisClusterException | OSError | TimeoutError)
