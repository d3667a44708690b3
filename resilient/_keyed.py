"""Per-key state with bounded memory: at most ``max_keys`` entries, least recently
used first out, each entry also forgotten once it has expired.

Used by the in-memory rate-limit store (one entry per limited key) and meant
for any policy partitioned by key. A flood of distinct keys costs at most
``max_keys`` entries. Expiry is lazy: nothing runs in the background; expired
entries are dropped when they are looked up and, a few at a time, whenever a
key is added, so memory shrinks again after a flood.

An entry may refuse eviction (``can_evict`` returns false: an open circuit
breaker must not be forgotten just because many other keys came by). The map
then grows past ``max_keys`` rather than lose it; it does so only while every
entry it looks at refuses.

Not thread-safe on its own: the owner serialises access (the memory store holds
its lock around each operation).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Final, Generic, TypeVar

from ._errors import ConfigError

__all__ = ["BoundedMap", "Entry"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# How many of the oldest entries one insertion inspects: enough to keep up with
# the insertion rate (each insertion can free at least one), small enough to be O(1).
_SWEEP: Final = 2
_REFUSALS: Final = 8


class Entry(Generic[V]):
    """One value and the time it expires (mutable, so a hit updates it in place)."""

    __slots__ = ("expires_at", "value")

    def __init__(self, value: V, expires_at: float) -> None:
        self.value = value
        self.expires_at = expires_at


class BoundedMap(Generic[K, V]):
    """A mapping of at most ``max_keys`` entries with lazy per-entry expiry.

    Args:
        max_keys: the most entries kept (>= 1).
        can_evict: called with a value about to be evicted for room; returning
            false keeps it (it becomes the most recently used). ``None``: any entry
            may be evicted. Expired entries are dropped regardless.

    Each entry carries an absolute ``expires_at`` on the owner's clock, set on
    every :meth:`put`: a rate limiter passes the time its state becomes empty
    again, a keyed breaker passes ``now + idle``.
    """

    __slots__ = ("_can_evict", "_data", "evictions", "expirations", "max_keys")

    def __init__(self, max_keys: int, *, can_evict: Callable[[V], bool] | None = None) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ConfigError("max_keys", max_keys, "an int >= 1")
        self.max_keys = max_keys
        self._can_evict = can_evict
        self._data: OrderedDict[K, Entry[V]] = OrderedDict()
        self.evictions = 0
        """Entries dropped for room while still live (state lost)."""
        self.expirations = 0
        """Entries dropped because they had expired (nothing lost)."""

    def get(self, key: K, now: float) -> V | None:
        """The live value for *key* (marked most recently used), or ``None``."""
        entry = self._data.get(key)
        if entry is None:
            return None
        if now >= entry.expires_at:
            del self._data[key]
            self.expirations += 1
            return None
        self._data.move_to_end(key)
        return entry.value

    def entry(self, key: K, now: float) -> Entry[V] | None:
        """Like :meth:`get`, but the mutable entry (``.value``, ``.expires_at``) itself."""
        entry = self._data.get(key)
        if entry is None:
            return None
        if now >= entry.expires_at:
            del self._data[key]
            self.expirations += 1
            return None
        self._data.move_to_end(key)
        return entry

    def add(self, key: K, value: V, expires_at: float, now: float) -> Entry[V]:
        """Insert *key*, known to be absent, making room if needed; the new entry."""
        entry = Entry(value, expires_at)
        self.insert(key, entry, now)
        return entry

    def insert(self, key: K, entry: Entry[V], now: float) -> None:
        """Insert *entry* for *key*, known to be absent, making room if needed."""
        data = self._data
        if data:
            self._sweep(now)
            if len(data) >= self.max_keys:
                if self._can_evict is None:  # the common case, inlined
                    data.popitem(last=False)
                    self.evictions += 1
                else:
                    self._make_room()
        data[key] = entry

    def put(self, key: K, value: V, expires_at: float, now: float) -> None:
        """Store *value* for *key* until *expires_at*, making room if needed."""
        data = self._data
        entry = data.get(key)
        if entry is not None:
            entry.value = value
            entry.expires_at = expires_at
            data.move_to_end(key)
            return
        self._sweep(now)
        if len(data) >= self.max_keys:
            self._make_room()
        data[key] = Entry(value, expires_at)

    def pop(self, key: K) -> V | None:
        """Forget *key*; its value, or ``None``."""
        entry = self._data.pop(key, None)
        return None if entry is None else entry.value

    def clear(self) -> None:
        self._data.clear()

    def expire(self, now: float) -> int:
        """Drop every expired entry now (O(n)); how many were dropped."""
        stale = [key for key, entry in self._data.items() if now >= entry.expires_at]
        for key in stale:
            del self._data[key]
        self.expirations += len(stale)
        return len(stale)

    def _sweep(self, now: float) -> None:
        data = self._data
        for _ in range(_SWEEP):
            if not data:
                return
            key = next(iter(data))
            if now < data[key].expires_at:
                return
            del data[key]
            self.expirations += 1

    def _make_room(self) -> None:
        data = self._data
        can_evict = self._can_evict
        if can_evict is None:
            data.popitem(last=False)
            self.evictions += 1
            return
        for _ in range(_REFUSALS):
            key, entry = next(iter(data.items()))
            if can_evict(entry.value):
                del data[key]
                self.evictions += 1
                return
            data.move_to_end(key)
        # Every entry looked at refused: grow rather than forget one of them.

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._data))

    def __repr__(self) -> str:
        return f"BoundedMap(max_keys={self.max_keys}, size={len(self._data)})"
