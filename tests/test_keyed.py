"""BoundedMap: at most max_keys entries, LRU eviction, lazy expiry, refusals."""

from __future__ import annotations

import pytest

from resilient import ConfigError
from resilient._keyed import BoundedMap


def test_least_recently_used_is_evicted_first():
    """A full map evicts the entry touched longest ago."""
    keys: BoundedMap[str, int] = BoundedMap(2)
    keys.put("a", 1, 100.0, 0.0)
    keys.put("b", 2, 100.0, 0.0)
    assert keys.get("a", 0.0) == 1  # "a" is now the most recent
    keys.put("c", 3, 100.0, 0.0)
    assert "b" not in keys
    assert list(keys) == ["a", "c"]
    assert keys.evictions == 1
    assert len(keys) == 2


def test_entries_expire_lazily_on_access_and_on_insertion():
    """An expired entry is gone when looked up, and insertions sweep the oldest."""
    keys: BoundedMap[str, int] = BoundedMap(10)
    keys.put("a", 1, 5.0, 0.0)
    keys.put("b", 2, 5.0, 0.0)
    keys.put("c", 3, 50.0, 0.0)
    assert keys.get("a", 5.0) is None  # expiry is inclusive
    assert keys.expirations == 1
    keys.put("d", 4, 50.0, 6.0)  # sweeps "b" on the way
    assert "b" not in keys
    assert keys.expirations == 2
    assert keys.evictions == 0


def test_update_keeps_one_entry_and_refreshes_expiry():
    """put() on a present key replaces its value and expiry."""
    keys: BoundedMap[str, int] = BoundedMap(3)
    keys.put("a", 1, 1.0, 0.0)
    keys.put("a", 2, 9.0, 0.5)
    assert keys.get("a", 5.0) == 2
    assert len(keys) == 1
    entry = keys.entry("a", 5.0)
    assert entry is not None
    assert (entry.value, entry.expires_at) == (2, 9.0)
    assert keys.entry("a", 9.0) is None


def test_entries_that_refuse_eviction_are_kept_and_the_map_grows():
    """can_evict=False keeps an entry (e.g. an open breaker); others go first."""
    keys: BoundedMap[str, str] = BoundedMap(2, can_evict=lambda value: value != "open")
    keys.put("a", "open", 100.0, 0.0)
    keys.put("b", "closed", 100.0, 0.0)
    keys.put("c", "closed", 100.0, 0.0)
    assert set(keys) == {"a", "c"}
    keys.put("d", "open", 100.0, 0.0)  # evicts "c", keeps "a"
    assert set(keys) == {"a", "d"}
    keys.put("e", "open", 100.0, 0.0)  # everyone refuses: grow rather than forget
    assert set(keys) == {"a", "d", "e"}


def test_expired_entries_go_even_if_they_would_refuse():
    """Expiry is not eviction: an expired entry is dropped whatever can_evict says."""
    keys: BoundedMap[str, str] = BoundedMap(2, can_evict=lambda value: False)
    keys.put("a", "open", 1.0, 0.0)
    keys.put("b", "open", 100.0, 0.0)
    keys.put("c", "open", 100.0, 2.0)
    assert set(keys) == {"b", "c"}
    assert keys.expire(200.0) == 2
    assert len(keys) == 0


def test_pop_clear_and_repr():
    """pop() returns the value; clear() empties the map."""
    keys: BoundedMap[int, str] = BoundedMap(4)
    keys.add(1, "x", 10.0, 0.0)
    assert keys.pop(1) == "x"
    assert keys.pop(1) is None
    keys.put(2, "y", 10.0, 0.0)
    assert repr(keys) == "BoundedMap(max_keys=4, size=1)"
    keys.clear()
    assert len(keys) == 0


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "10"])
def test_max_keys_must_be_a_positive_int(bad):
    """max_keys is validated with a ConfigError naming it."""
    with pytest.raises(ConfigError) as info:
        BoundedMap(bad)
    assert info.value.path == "max_keys"


def test_a_flood_of_keys_stays_bounded():
    """100,000 distinct keys through a map of 1,000 keep it at 1,000."""
    keys: BoundedMap[int, int] = BoundedMap(1_000)
    for i in range(100_000):
        keys.put(i, i, 1e9, 0.0)
    assert len(keys) == 1_000
    assert keys.evictions == 99_000
    assert next(iter(keys)) == 99_000
