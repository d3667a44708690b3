"""Redis key names: namespaced, hash-tagged, and safe from user-supplied parts.

Every key resilient writes has the shape::

    <prefix>:{<escaped key>}:<suffix>

* ``prefix`` (default ``"resilient"``) separates applications sharing a Redis.
* The braces are a Redis Cluster *hash tag*: only the text between them picks
  the slot, so every key of one limited thing (its state hash and its logs)
  lives in one slot and a script may touch them all at once.
* The user-supplied part is escaped: ``%``, ``{`` and ``}`` become ``%25``,
  ``%7B`` and ``%7D``. The prefix may not contain braces, so the first ``{``
  opens our tag and the first ``}`` closes it: no key part can end the tag
  early, move another key into its slot, or make two different (prefix, key,
  suffix) triples spell the same name.
"""

from __future__ import annotations

from ..._errors import ConfigError

__all__ = ["DEFAULT_PREFIX", "check_prefix", "escape", "tagged"]

DEFAULT_PREFIX = "resilient"

_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})


def escape(part: str) -> str:
    """*part* with ``%``, ``{`` and ``}`` percent-encoded (other text unchanged)."""
    if "%" in part or "{" in part or "}" in part:
        return part.translate(_ESCAPES)
    return part


def check_prefix(prefix: object) -> str:
    """*prefix* if it is a usable key prefix, else :class:`~resilient.ConfigError`."""
    if not isinstance(prefix, str) or "{" in prefix or "}" in prefix or not prefix.isprintable():
        raise ConfigError("prefix", prefix, "a string without braces or control characters")
    return prefix


def tagged(prefix: str, key: str) -> str:
    """``<prefix>:{<escaped key>}``: the start of every key of *key*, hash tag included."""
    return f"{prefix}:{{{escape(key)}}}"
