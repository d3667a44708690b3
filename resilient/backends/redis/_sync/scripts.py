# GENERATED from _async/scripts.py by scripts/unasync.py -- do not edit.
"""Running a cached Lua script: one ``EVALSHA``, or ``EVAL`` when Redis lost the script."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from .._scripts import Script

__all__ = ["run_script"]


def run_script(client: Any, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """Run *script* on *keys* and *args*: one round trip while Redis has it cached.

    After a restart, a failover or ``SCRIPT FLUSH`` the ``EVALSHA`` fails with
    ``NOSCRIPT`` (without running anything) and the script is sent with ``EVAL``,
    which also caches it again: two round trips, once. Works unchanged on Redis
    Cluster, where both commands go to the node that owns the keys' slot.
    """
    try:
        return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return client.execute_command("EVAL", script.text, len(keys), *keys, *args)
