"""Where shared state lives: the store protocols, and stores chosen by URL.

A rate limiter asks its store for one :class:`~resilient.Decision` per call.
The store runs the algorithms of :mod:`resilient._algorithms` on the state it
keeps for a key, **atomically for all of the limiter's limits at once**, so a
refused call consumes from none of them.

Two protocols with distinct method names (``try_acquire`` / ``atry_acquire``...),
so one class can implement both, as :class:`~resilient.backends.memory.MemoryStore`
does (it does no I/O) and as the Redis store does (one connection URL, a sync
and an async client). Stores come from URLs with :func:`store_from_url`; the
schemes live in a plain dict, and a backend module adds its own with
:func:`register_store`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from .._algorithms import Decision, Limit
from .._errors import ConfigError

__all__ = [
    "AsyncRateLimitStore",
    "Decision",
    "Limit",
    "RateLimitStore",
    "register_store",
    "store_from_url",
    "store_schemes",
]


@runtime_checkable
class RateLimitStore(Protocol):
    """Rate-limit state, used from sync code.

    ``key`` is the full key of one limited thing (the limiter's name and the
    caller's key, e.g. ``"api:user-42"``). ``limits`` are the limiter's limits;
    a store keeps separate state per key *and* per limits, so changing a
    limiter's rate starts from fresh state rather than misreading the old one.
    Time is the store's own (its clock, or the server's).
    """

    def try_acquire(
        self, key: str, limits: Sequence[Limit], cost: int = 1, *, max_wait: float = 0.0
    ) -> Decision:
        """Take *cost* units from every limit of *key*, or from none of them.

        Refused: ``allowed`` is false and ``retry_after`` says when the call would
        fit. With ``max_wait > 0``, a call that fits within ``max_wait`` seconds is
        *booked*: the store consumes now for that future time, so later callers
        queue behind it (first in, first out), and returns ``allowed=True`` with
        ``retry_after`` = how long the caller must wait before starting. A store
        that cannot book refuses instead; the caller may then sleep and try again.

        Raises:
            ValueError: ``cost`` is below 1 or above a limit's capacity.
        """
        ...

    def release(self, key: str, limits: Sequence[Limit], cost: int, wait_left: float) -> None:
        """Give back a booking whose caller stopped waiting ``wait_left`` seconds early.

        Best effort: a store that cannot return it safely keeps it (capacity is
        lost, never over-granted).
        """
        ...

    def reset(self, key: str, limits: Sequence[Limit]) -> None:
        """Forget all state of *key* for these limits."""
        ...

    def ping(self) -> bool:
        """Whether the store answers (always true in memory)."""
        ...

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


@runtime_checkable
class AsyncRateLimitStore(Protocol):
    """The same store used from async code: :class:`RateLimitStore` with ``a``-prefixed,
    awaitable methods (``atry_acquire``, ``arelease``, ``areset``, ``aping``, ``aclose``)."""

    async def atry_acquire(
        self, key: str, limits: Sequence[Limit], cost: int = 1, *, max_wait: float = 0.0
    ) -> Decision:
        """Async :meth:`RateLimitStore.try_acquire`."""
        ...

    async def arelease(
        self, key: str, limits: Sequence[Limit], cost: int, wait_left: float
    ) -> None:
        """Async :meth:`RateLimitStore.release`."""
        ...

    async def areset(self, key: str, limits: Sequence[Limit]) -> None:
        """Async :meth:`RateLimitStore.reset`."""
        ...

    async def aping(self) -> bool:
        """Async :meth:`RateLimitStore.ping`."""
        ...

    async def aclose(self) -> None:
        """Async :meth:`RateLimitStore.close`."""
        ...


StoreFactory = Callable[..., Any]
"""Builds a store from ``(url, **options)``."""

# scheme -> factory, or "module:attribute" imported on first use, so that
# ``import resilient`` never imports a backend's client library.
_SCHEMES: dict[str, StoreFactory | str] = {
    "memory": "resilient.backends.memory:MemoryStore.from_url",
    "redis": "resilient.backends.redis:from_url",
    "rediss": "resilient.backends.redis:from_url",
    "redis+cluster": "resilient.backends.redis:from_url",
    "rediss+cluster": "resilient.backends.redis:from_url",
}
_LIMITS_PREFIX = "limits+"


def register_store(scheme: str, factory: StoreFactory | str) -> None:
    """Make :func:`store_from_url` build *factory(url, **options)* for ``scheme://`` URLs.

    *factory* may be ``"package.module:Class.from_url"``, imported on first use.
    Registering a scheme again replaces it.
    """
    if not isinstance(scheme, str) or not scheme or "://" in scheme:
        raise ConfigError("scheme", scheme, "a URL scheme such as 'redis'")
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise ConfigError("factory", factory, "a callable or a 'module:attribute' string")
    _SCHEMES[scheme.lower()] = factory


def store_schemes() -> list[str]:
    """The registered URL schemes (plus ``limits+<scheme>`` for any ``limits`` storage)."""
    return [*sorted(_SCHEMES), f"{_LIMITS_PREFIX}<scheme>"]


def store_from_url(url: str, **options: Any) -> Any:
    """A store for *url*; *options* go to the store's constructor.

    * ``memory://`` (``memory://?max_keys=100000``): this process only.
    * ``limits+<uri>``: any storage of the ``limits`` package (``limits+memcached://…``,
      ``limits+mongodb://…``, ``limits+redis+sentinel://…``), window limiters only.
    * ``redis://``, ``rediss://``, ``redis+cluster://``, ``rediss+cluster://``: Redis or
      Redis Cluster (:mod:`resilient.backends.redis`; needs the ``redis`` extra).

    Raises:
        ConfigError: the URL is malformed or its scheme is unknown.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError("store", url, "a store URL such as 'memory://' or 'redis://host:6379/0'")
    scheme = url.partition("://")[0].lower()
    if scheme.startswith(_LIMITS_PREFIX) and len(scheme) > len(_LIMITS_PREFIX):
        from .limits import LimitsStore

        return LimitsStore.from_url(url, **options)
    factory = _SCHEMES.get(scheme)
    if factory is None:
        raise ConfigError("store", url, f"a URL with a known scheme: {', '.join(store_schemes())}")
    if isinstance(factory, str):
        factory = _resolve(factory)
    return factory(url, **options)


def _resolve(target: str) -> StoreFactory:
    module_name, _, attribute = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]
