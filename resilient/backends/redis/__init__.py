"""Rate limits shared through Redis or Redis Cluster (``pip install resilient-middleware[redis]``).

Two stores, one per flavour of redis-py client:

* :class:`RedisStore` (``redis.Redis`` / ``redis.cluster.RedisCluster``) for sync
  code. It also has the ``a``-prefixed async methods, run on an asyncio client
  of its own, so the store ``store_from_url`` builds serves ``call`` and ``acall``.
* :class:`AsyncRedisStore` (``redis.asyncio``) for async code only.

Both take ``url`` (or ``client=``), ``prefix``, ``on_backend_error``,
``timeout``, ``connect_timeout``, ``probe_interval``, ``clock`` and
``max_local_keys``; see :class:`~resilient.backends.redis._core.StoreCore`::

    store = RedisStore("redis://:secret@redis:6379/0", on_backend_error="local")
    limiter = rs.TokenBucket("100/s", key=lambda user: user, store=store)
    rs.TokenBucket("100/s", store="redis+cluster://10.0.0.1:7000,10.0.0.2:7000")

How a decision is made: one ``EVALSHA`` of a Lua script (``lua/acquire.lua``)
that reads the key's state, runs every limit's algorithm (the twins of
:mod:`resilient._algorithms`, giving the same decisions), writes the state back
with a TTL and answers, all atomically, on the server's clock (``TIME``).
Keys are ``<prefix>:{<key>}:<limits>`` (see ``_keys.py``): the hash tag keeps a
key's state in one Redis Cluster slot.

When Redis fails (down, too slow, failing over, read-only), each call gets what
``on_backend_error`` says: ``"raise"`` (:class:`~resilient.BackendError`),
``"allow"``, ``"deny"`` or ``"local"`` (an in-memory twin decides until Redis
answers again); for ``probe_interval`` seconds after a failure Redis is not
called at all.

:class:`RedisRetryBudget` is a :class:`~resilient.RetryBudget` kept in Redis,
so that a fleet shares one retry budget (see ``_budget.py``).

:class:`SharedCircuitBreaker` is a :class:`~resilient.CircuitBreaker` kept in
Redis, so that a fleet shares one breaker (see ``_breaker.py``); it is what
``CircuitBreaker(name=..., store=store_or_url)`` builds.

Importing this package does not import redis-py; using a store does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._async.store import AsyncRedisStore
    from ._breaker import SharedCircuitBreaker
    from ._budget import RedisRetryBudget
    from ._sync.store import RedisStore

__all__ = ["AsyncRedisStore", "RedisRetryBudget", "RedisStore", "SharedCircuitBreaker", "from_url"]

_LAZY = {
    "AsyncRedisStore": "._async.store",
    "RedisRetryBudget": "._budget",
    "RedisStore": "._sync.store",
    "SharedCircuitBreaker": "._breaker",
}


def from_url(url: str, **options: Any) -> RedisStore:
    """The store for ``store_from_url("redis://...")``: a :class:`RedisStore` (sync
    and async methods). *options* are its keyword arguments."""
    from ._sync.store import RedisStore

    return RedisStore(url, **options)


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    import importlib

    value = getattr(importlib.import_module(target, __name__), name)
    globals()[name] = value
    return value
