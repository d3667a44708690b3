"""Who a request counts against: client addresses behind trusted proxies, and key specs.

A key function maps a request's scope to a partition key string, or to ``None``
when it finds nothing (no such header, an anonymous user); the middleware then
falls back to the client address. Every key kind has its own prefix
(``ip:``, ``header:<name>:``, ``user:``, ``path:``), so a header value can never
collide with an address.

The client address is the connection's peer (``scope["client"]``) unless that peer
is a trusted proxy: then the forwarding header (``X-Forwarded-For`` or ``Forwarded``,
one of them, never both) is read from the right, skipping trusted proxies, and the
first address that is not one is the client. Anything a client wrote to the left of
that is ignored, so it cannot choose its own key. An entry that is not an address
(``unknown``, an obfuscated name, garbage) stops the walk at the last trusted hop.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable
from functools import lru_cache
from importlib import import_module
from typing import Any, Final, Literal, TypeAlias

from resilient._errors import ConfigError

from ._types import KeyFunc, Scope

__all__ = [
    "GLOBAL",
    "KeySpec",
    "TrustedProxies",
    "header_key",
    "key_function",
    "path_key",
    "user_key",
]

IPNetwork: TypeAlias = "ipaddress.IPv4Network | ipaddress.IPv6Network"
Address: TypeAlias = "ipaddress.IPv4Address | ipaddress.IPv6Address"

GLOBAL: Final = "global"
"""The key spec of one limit shared by every client."""

KeySpec: TypeAlias = "str | KeyFunc"
"""``"client"``, ``"global"``, ``"path"``, ``"user"``, ``"header:<Name>"``, an import
path ``"module:function"``, or a callable ``(scope) -> str | None``."""

_MAX_KEY = 128  # longer header values are hashed, so keys stay small in every store
_MAX_HOPS = 64


def _long(kind: str, value: str) -> str:
    if len(value) > _MAX_KEY:
        value = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return f"{kind}:{value}"


@lru_cache(maxsize=4096)
def _parse(text: str) -> Address | None:
    """An address from a forwarding entry or peer host: ``1.2.3.4``, ``1.2.3.4:80``,
    ``[2001:db8::1]:443``, ``2001:db8::1``; ``None`` for anything else."""
    text = text.strip().strip('"')
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_for(element: str) -> str:
    """The ``for=`` value of one RFC 7239 ``Forwarded`` element (``""`` if absent)."""
    for pair in element.split(";"):
        name, _, value = pair.partition("=")
        if name.strip().lower() == "for":
            return value.strip()
    return ""


class TrustedProxies:
    """Finds the client address of a request, believing forwarding headers only when
    the connection comes from a trusted proxy.

    Args:
        proxies: addresses or networks (``"10.0.0.0/8"``, ``"::1"``) of the proxies in
            front of the app; ``"*"`` trusts every peer (only when the app cannot be
            reached except through the proxies). Empty: never read forwarding headers.
        header: ``"x-forwarded-for"`` (default) or ``"forwarded"`` (RFC 7239): the one
            header your proxies set. The other is ignored, so a client cannot use it.
        ipv6_prefix: IPv6 clients are grouped by this prefix length (default 64, the
            block one subscriber usually gets); 128 keys each address on its own.
    """

    __slots__ = ("_all", "_header", "_networks", "ipv6_prefix", "proxies")

    def __init__(
        self,
        proxies: Iterable[str] = (),
        *,
        header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for",
        ipv6_prefix: int = 64,
    ) -> None:
        if isinstance(proxies, str):
            proxies = (proxies,)
        networks: list[IPNetwork] = []
        trust_all = False
        for item in proxies:
            if item == "*":
                trust_all = True
                continue
            try:
                networks.append(ipaddress.ip_network(str(item).strip(), strict=False))
            except ValueError:
                raise ConfigError(
                    "trusted_proxies", item, "IP addresses or networks such as '10.0.0.0/8', or '*'"
                ) from None
        name = str(header).lower()
        if name not in ("x-forwarded-for", "forwarded"):
            raise ConfigError("proxy_header", header, "'x-forwarded-for' or 'forwarded'")
        if isinstance(ipv6_prefix, bool) or not isinstance(ipv6_prefix, int):
            raise ConfigError("ipv6_prefix", ipv6_prefix, "an int between 1 and 128")
        if not 1 <= ipv6_prefix <= 128:
            raise ConfigError("ipv6_prefix", ipv6_prefix, "an int between 1 and 128")
        self.proxies = tuple(networks)
        self._networks = tuple(networks)
        self._all = trust_all
        self._header = name.encode()
        self.ipv6_prefix = ipv6_prefix

    @property
    def enabled(self) -> bool:
        """Whether any proxy is trusted (otherwise forwarding headers are never read)."""
        return self._all or bool(self._networks)

    def _trusted(self, address: Address) -> bool:
        if self._all:
            return True
        for network in self._networks:
            if address.version == network.version and address in network:
                return True
        return False

    def client(self, scope: Scope) -> str | None:
        """The client address of the request (IPv6 grouped by ``ipv6_prefix``), or
        ``None`` when the server does not say (no ``scope["client"]``)."""
        peer = scope.get("client")
        host = peer[0] if peer else None
        if not host:
            return None
        if not (self._all or self._networks):
            return self._show(host) if ":" in host else host
        address = _parse(host)
        if address is None or not self._trusted(address):
            return self._show(host)
        found = self._walk(scope, address)
        return self._format(found)

    def _walk(self, scope: Scope, address: Address) -> Address:
        values = [v for k, v in scope.get("headers", ()) if k.lower() == self._header]
        if not values:
            return address
        text = b",".join(values).decode("latin-1")
        entries = text.split(",")
        forwarded = self._header == b"forwarded"
        for hops, entry in enumerate(reversed(entries)):
            if hops >= _MAX_HOPS:
                break
            hop = _parse(_forwarded_for(entry) if forwarded else entry)
            if hop is None:
                break  # not an address: believe nothing further left
            address = hop
            if not self._trusted(hop):
                break
        return address

    def _show(self, host: str) -> str:
        address = _parse(host)
        return host if address is None else self._format(address)

    def _format(self, address: Address) -> str:
        if isinstance(address, ipaddress.IPv6Address) and self.ipv6_prefix < 128:
            network = ipaddress.IPv6Network((address, self.ipv6_prefix), strict=False)
            return str(network)
        return str(address)

    def __repr__(self) -> str:
        shown = ["*"] if self._all else [str(n) for n in self._networks]
        return (
            f"TrustedProxies({shown!r}, header={self._header.decode()!r}, "
            f"ipv6_prefix={self.ipv6_prefix})"
        )


# -- key functions ------------------------------------------------------------------------


def header_key(name: str) -> KeyFunc:
    """Key on a request header's value (``"X-API-Key"``); ``None`` when it is absent.

    The value is hashed (SHA-256): an API key never reaches a store, an event or a log.
    """
    raw = name.strip().lower().encode("latin-1")
    if not raw:
        raise ConfigError("key", f"header:{name}", "a header name after 'header:'")
    kind = "header:" + raw.decode("latin-1")

    def by_header(scope: Scope) -> str | None:
        for k, v in scope.get("headers", ()):
            if k.lower() == raw:
                value = v.strip()
                if not value:
                    return None
                return f"{kind}:{hashlib.sha256(value).hexdigest()[:32]}"
        return None

    by_header.__qualname__ = f"header_key({name!r})"
    return by_header


def user_key(scope: Scope) -> str | None:
    """Key on the authenticated user (``scope["user"]``, as set by an authentication
    middleware outside this one); ``None`` for anonymous requests."""
    user = scope.get("user")
    if user is None:
        return None
    if isinstance(user, str):
        return _long("user", user) if user else None
    try:
        if not getattr(user, "is_authenticated", True):
            return None
    except NotImplementedError:
        pass
    for attribute in ("identity", "display_name", "username", "id"):
        try:
            value = getattr(user, attribute, None)
        except NotImplementedError:
            continue
        if value is not None and value != "":
            return _long("user", str(value))
    return None


def path_key(scope: Scope) -> str | None:
    """Key on the request path (one limit per URL, shared by every client)."""
    path = scope.get("path")
    return _long("path", path) if path else None


def _imported(spec: str) -> Callable[..., Any]:
    module_name, _, attribute = spec.partition(":")
    try:
        target: Any = import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError("key", spec, f"an importable callable ({exc})") from None
    if not callable(target):
        raise ConfigError("key", spec, "a callable (scope) -> str | None")
    return target  # type: ignore[no-any-return]


_KEY_EXPECTED = (
    "'client', 'global', 'path', 'user', 'header:<Name>', an import path "
    "'module:function', or a callable (scope) -> str | None"
)


def key_function(spec: object, *, path: str = "key") -> KeyFunc | None:
    """The key function a spec names; ``None`` for the client address (``"client"``).

    ``"global"`` returns a function that always gives the same key.
    """
    if callable(spec):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(path, spec, _KEY_EXPECTED)
    text = spec.strip()
    lowered = text.lower()
    if lowered == "client":
        return None
    if lowered == GLOBAL:
        return _global
    if lowered == "path":
        return path_key
    if lowered == "user":
        return user_key
    if lowered.startswith("header:"):
        return header_key(text[len("header:") :])
    if ":" in text:
        return _imported(text)
    raise ConfigError(path, spec, _KEY_EXPECTED)


def _global(scope: Scope) -> str:
    return GLOBAL
