"""Redis URLs: what to connect to, with which options, and how to show it.

``redis://[[user]:password@]host[:port][/db][?option=value...]``,
``rediss://...`` (TLS), and ``redis+cluster://[[user]:password@]host:port[,host:port...]``
(``rediss+cluster://`` with TLS) for Redis Cluster, where every listed node is a
startup node. Query options are the store's own (``prefix``, ``on_backend_error``,
``timeout``, ``connect_timeout``, ``probe_interval``) or redis-py's connection
options (``ssl_cert_reqs``, ``health_check_interval``...).

Passwords never leave this module except in the client's options: every
description of a backend goes through :func:`redact`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..._errors import ConfigError

__all__ = ["SCHEMES", "STORE_OPTIONS", "RedisTarget", "parse_redis_url", "redact"]

SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster")

STORE_OPTIONS = ("prefix", "on_backend_error", "timeout", "connect_timeout", "probe_interval")
"""Query options that configure the store rather than the Redis client."""

_SECRET_QUERY = {"password"}


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where a store connects: one server, or a cluster's startup nodes.

    Attributes:
        display: the URL with its password replaced by ``***``.
        cluster: whether it is a Redis Cluster.
        nodes: ``(host, port)`` of the startup nodes (cluster only).
        options: keyword arguments for the redis-py client (host, port, db,
            credentials, TLS and connection options); the store adds its timeouts.
    """

    display: str
    cluster: bool = False
    nodes: tuple[tuple[str, int], ...] = ()
    options: dict[str, Any] = field(default_factory=dict, repr=False)


def redact(url: str) -> str:
    """*url* with any password (in the user info or the query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hosts}" if colon else f"{userinfo}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name.lower() in _SECRET_QUERY for name, _ in pairs):
            pairs = [(n, "***" if n.lower() in _SECRET_QUERY else v) for n, v in pairs]
            query = urlencode(pairs, safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _bad(url: str, expected: str) -> ConfigError:
    return ConfigError("store", redact(url), expected)


def parse_redis_url(url: str) -> tuple[RedisTarget, dict[str, str]]:
    """The target of *url*, and the store options found in its query (as text).

    Raises:
        ConfigError: not a Redis URL, or one redis-py cannot read.
    """
    from redis.connection import parse_url

    if not isinstance(url, str):
        raise ConfigError("store", url, "a redis://, rediss:// or redis+cluster:// URL")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise _bad(url, "a redis://, rediss://, redis+cluster:// or rediss+cluster:// URL")
    cluster = scheme.endswith("+cluster")
    base = scheme.removesuffix("+cluster")
    parts = urlsplit(f"{base}://{rest}")
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in STORE_OPTIONS:
            ours[name] = value
        else:
            theirs.append((name, value))
    display = redact(url)
    nodes: tuple[tuple[str, int], ...] = ()
    if cluster:
        userinfo, at, hosts = parts.netloc.rpartition("@")
        found = []
        for host in hosts.split(","):
            name, colon, port = host.strip().rpartition(":")
            if not colon or not name or not port.isdigit():
                raise _bad(url, "redis+cluster://host:port[,host:port...] (a port for every node)")
            found.append((name.strip("[]"), int(port)))
        nodes = tuple(found)
        if parts.path not in ("", "/", "/0"):
            raise _bad(url, "a cluster URL without a database number (Redis Cluster has only 0)")
        netloc = f"{userinfo}{at}{hosts.split(',')[0].strip()}"
        parts = parts._replace(netloc=netloc, path="")
    single = urlunsplit(parts._replace(query=urlencode(theirs)))
    try:
        options = parse_url(single)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError) as exc:
        raise _bad(url, f"a URL redis-py can read ({exc})") from None
    if cluster:
        for name in ("host", "port", "db"):
            options.pop(name, None)
        if options.pop("connection_class", None) is not None:
            options["ssl"] = True
    return RedisTarget(display, cluster, nodes, options), ours
