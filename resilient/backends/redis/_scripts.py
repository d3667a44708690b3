"""Lua scripts, read from the package's ``lua/`` directory and assembled.

A script is the concatenation of a few files (shared definitions, then the
entry file that does the work) so that each decision is one ``EVALSHA`` of
one cached script. :func:`lua_script` builds any such script; the shared
breaker's scripts can reuse it with their own files.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib.resources import files

__all__ = ["Script", "lua_script", "pack_command", "rate_limit_script", "read_lua"]


@dataclass(frozen=True, slots=True)
class Script:
    """An assembled Lua script: its text and the SHA1 Redis caches it under."""

    name: str
    text: str
    sha: str

    def __repr__(self) -> str:
        return f"Script({self.name!r}, sha={self.sha[:12]})"


def pack_command(*parts: bytes | str | int | float) -> bytes:
    """One command in the Redis protocol (RESP): an array of bulk strings, encoded as
    redis-py encodes arguments (``str`` as UTF-8, ``int`` and ``float`` by ``repr``,
    ``bytes`` as they are) without its per-argument machinery."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        if type(part) is bytes:
            data = part
        elif isinstance(part, str):
            data = part.encode()
        elif isinstance(part, int | float) and not isinstance(part, bool):
            data = repr(part).encode()
        elif isinstance(part, bytes | bytearray | memoryview):
            data = bytes(part)
        else:
            msg = f"a Redis command argument must be bytes, str, int or float, not {part!r}"
            raise TypeError(msg)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


@functools.cache
def read_lua(name: str) -> str:
    """The text of ``lua/<name>`` inside this package."""
    return (files(__package__) / "lua" / name).read_text(encoding="utf-8")


def lua_script(*parts: str) -> Script:
    """The script made of the files *parts*, in order (the last one is the entry)."""
    text = "\n".join(read_lua(part) for part in parts)
    sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
    return Script(parts[-1], text, sha)


_ALGORITHM_FILES = {
    "tb": "token_bucket.lua",
    "sl": "sliding_log.lua",
    "sc": "sliding_counter.lua",
    "fw": "fixed_window.lua",
}


@functools.cache
def rate_limit_script(entry: str, codes: frozenset[str]) -> Script:
    """``acquire.lua`` or ``release.lua`` for limits of the algorithms *codes*
    (``"tb"``, ``"sl"``, ``"sc"``, ``"fw"``): only the code they need, so that each
    run defines as little as possible."""
    algorithms = [name for code, name in _ALGORITHM_FILES.items() if code in codes]
    return lua_script("common.lua", *algorithms, "limits.lua", entry)
