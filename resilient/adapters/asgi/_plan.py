"""Routes and plans: which policies a request goes through, decided once per route.

A *plan* is what one route (or the middleware's default) runs, split the way the
middleware needs it: the rate limiters, asked first and directly (their
decisions feed the response headers), then the other policies (bulkhead,
breaker, timeout, your own), run around the app in the order given. Plans are
built when the middleware is built and rebuilt only when a registry hands out
different policy objects (after a reload).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from resilient._algorithms import Decision
from resilient._errors import ConfigError
from resilient._fallback import Fallback
from resilient._pipeline import Pipeline, Policy
from resilient._retry import Retry
from resilient.backends.memory import MemoryStore

from ._keys import KeySpec, key_function
from ._responses import LimitHeaders
from ._types import KeyFunc, Scope

__all__ = ["LimiterSlot", "Plan", "Route", "RouteTable", "Target"]

Target: TypeAlias = "Policy | str | Sequence[Policy | str] | None"
"""What a route runs: a policy, a registry name, several of them (outermost first),
or ``None`` (nothing: the request goes straight to the app)."""

_METHOD_RE = re.compile(r"^[A-Za-z]+$")


def _methods(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Iterable):
        raise ConfigError("Route.methods", value, "a collection of HTTP method names")
    out = set()
    for item in value:
        if not isinstance(item, str) or not _METHOD_RE.match(item):
            raise ConfigError("Route.methods", value, "a collection of HTTP method names")
        out.add(item.upper())
    return frozenset(out) or None


def _target_items(target: object, name: str) -> tuple[Policy | str, ...]:
    if target is None:
        return ()
    if isinstance(target, str | Policy):
        target = (target,)
    if not isinstance(target, Sequence):
        raise ConfigError(name, target, "a policy, a registry name, a sequence of them, or None")
    for item in target:
        if not isinstance(item, str | Policy):
            raise ConfigError(name, item, "a policy (with call() and acall()) or a registry name")
    return tuple(target)


@dataclass(frozen=True, slots=True)
class Route:
    """Send matching requests through their own policies (the first match wins).

    ``Route("api", path="/api/*", methods=["GET", "POST"], key="header:X-API-Key")``
    runs the registry's ``"api"`` pipeline for those requests, counting its rate
    limits per API key. Requests no route matches use the middleware's own
    policies.

    Args:
        policy: a policy, a registry name, a sequence of them (outermost first),
            or ``None``: the matching requests go straight to the app.
        path: a glob on the request path (``"/api/*"``; ``*`` also crosses ``/``);
            the default matches every path.
        methods: HTTP methods (``None``: all). A websocket handshake counts as ``GET``.
        key: what the rate limits of this route count per (``None``: the
            middleware's ``key``); see ``ResilienceMiddleware``.
    """

    policy: Target
    path: str = "*"
    methods: Collection[str] | None = None
    key: KeySpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ConfigError("Route.path", self.path, "a glob such as '/api/*'")
        object.__setattr__(self, "methods", _methods(self.methods))
        _target_items(self.policy, "Route.policy")
        if self.key is not None:
            key_function(self.key, path="Route.key")


def as_route(item: object) -> Route:
    """A :class:`Route` from a ``Route``, a mapping or a config object with the same
    fields (``policy``, ``path``, ``methods``, ``key``)."""
    if isinstance(item, Route):
        return item
    if isinstance(item, Mapping):
        unknown = set(item) - {"policy", "path", "methods", "key"}
        if unknown:
            raise ConfigError("routes", item, "keys policy, path, methods and key only")
        fields: Mapping[str, Any] = item
    elif hasattr(item, "policy"):
        fields = {name: getattr(item, name, None) for name in ("policy", "path", "methods", "key")}
    else:
        raise ConfigError("routes", item, "Route(...) objects or mappings with policy and path")
    methods = fields.get("methods") or None
    return Route(
        fields.get("policy"),
        path=fields.get("path") or "*",
        methods=methods,
        key=fields.get("key"),
    )


class LimiterSlot:
    """How the middleware asks one rate limiter, with its header fields precomputed.

    A limiter built with its own ``key`` keeps it: a fixed value makes one limit
    for every client (a global limit); a callable is applied to the request's
    scope. A limiter without a key is counted per the route's key.
    """

    __slots__ = ("cost", "cost_fn", "fixed", "headers", "key_fn", "keyed", "limiter", "local")

    def __init__(self, limiter: Any) -> None:
        self.limiter = limiter
        own_fn = getattr(limiter, "_key_fn", None)
        own_key = getattr(limiter, "_key", None)
        self.key_fn: Callable[[Scope], Any] | None = own_fn
        self.fixed = own_fn is None and own_key is not None
        self.cost_fn: Callable[[Scope], int] | None = getattr(limiter, "_cost_fn", None)
        self.cost: int = getattr(limiter, "_cost", 1)
        self.headers = LimitHeaders(limiter.name, limiter.limits)
        self.local = isinstance(getattr(limiter, "store", None), MemoryStore)
        """In memory: decided by the sync ``try_acquire`` (no I/O, no coroutine)."""
        self.keyed: Callable[[str, int], Decision] | None = (
            getattr(limiter, "_keyed", None) if self.local else None
        )
        """In memory: ``try_acquire(key, cost)`` for a ``str`` key, in one call."""

    @property
    def own_key(self) -> bool:
        """Whether the limiter brings its own key (fixed or a callable)."""
        return self.fixed or self.key_fn is not None


def _flatten(policy: Policy, where: str, strict: bool) -> Iterator[Policy]:
    """The policies inside *policy*, pipelines unpacked. A ``Retry`` or ``Fallback`` is
    an error when given to the middleware, and skipped in a registry's pipeline (the
    policy file's linter warns about it)."""
    if isinstance(policy, Pipeline):
        for inner in policy.policies:
            yield from _flatten(inner, where, strict)
        return
    if not strict and isinstance(policy, Retry | Fallback):
        return
    if isinstance(policy, Retry):
        raise ConfigError(
            where, policy, "inbound policies only: the middleware never retries a request"
        )
    if isinstance(policy, Fallback):
        raise ConfigError(
            where, policy, "inbound policies only (a Fallback cannot answer for the app)"
        )
    yield policy


def _is_limiter(policy: object) -> bool:
    return hasattr(policy, "atry_acquire") and hasattr(policy, "limits")


class Plan:
    """What one route runs.

    Attributes:
        source: the policies it was built from (to notice a registry reload).
        limiters: the rate limiters, in order.
        guard: the other policies as one (``None``: there are none).
        policies: every policy of the plan (limiters and guards), flattened.
        key: the route's key function (``None``: the client address).
        route: the route's path pattern, for events (``None``: the default).
        needs_key: whether a limiter counts per the route's key.
        by_address: whether that key is the client address.
        single: the only limiter, when it can be decided in line (see below).
    """

    __slots__ = (
        "by_address",
        "guard",
        "key",
        "limiters",
        "needs_key",
        "policies",
        "route",
        "single",
        "source",
    )

    def __init__(
        self,
        source: tuple[Policy, ...],
        *,
        key: KeyFunc | None,
        route: str | None,
        where: str,
        named: tuple[bool, ...] = (),
    ) -> None:
        self.source = source
        self.key = key
        self.route = route
        strict = [not (named and named[i]) for i in range(len(source))]
        flat = [p for i, policy in enumerate(source) for p in _flatten(policy, where, strict[i])]
        self.policies = tuple(flat)
        self.limiters = tuple(LimiterSlot(p) for p in flat if _is_limiter(p))
        guards = [p for p in flat if not _is_limiter(p)]
        self.guard: Policy | None = (
            None if not guards else guards[0] if len(guards) == 1 else Pipeline(*guards)
        )
        self.needs_key = any(not slot.own_key for slot in self.limiters)
        self.by_address = self.needs_key and key is None
        only = self.limiters[0] if len(self.limiters) == 1 else None
        self.single = (
            only
            if only is not None and only.local and only.key_fn is None and only.cost_fn is None
            else None
        )
        """The plan's only limiter when it is in memory with a plain key and cost: decided
        in line, without a coroutine."""

    @property
    def empty(self) -> bool:
        return not self.policies


class _Slot:
    """A route's target, resolved to a plan (again when a registry reloads)."""

    __slots__ = ("items", "key", "named", "pattern", "plan", "route", "where")

    def __init__(
        self, items: tuple[Policy | str, ...], key: KeyFunc | None, route: str | None, where: str
    ) -> None:
        self.items = items
        self.key = key
        self.route = route
        self.where = where
        self.named = any(isinstance(item, str) for item in items)
        self.plan: Plan | None = None


def _compile(pattern: str) -> Callable[[str], re.Match[str] | None]:
    return re.compile(fnmatch.translate(pattern), re.DOTALL).match


class RouteTable:
    """The routes and the default, resolved against an optional registry."""

    __slots__ = ("_default", "_routes", "registry")

    def __init__(
        self,
        policies: tuple[Policy | str, ...],
        routes: Sequence[Route],
        registry: Mapping[str, Any] | None,
        key: KeyFunc | None,
    ) -> None:
        if registry is not None and not isinstance(registry, Mapping):
            raise ConfigError("registry", registry, "a mapping of names to policies (a Registry)")
        self.registry = registry
        self._default = _Slot(_target_items(policies, "policies"), key, None, "policies")
        self._routes: list[tuple[Callable[[str], Any], frozenset[str] | None, _Slot]] = []
        for index, route in enumerate(routes):
            route_key = key if route.key is None else key_function(route.key, path="Route.key")
            items = _target_items(route.policy, f"routes[{index}].policy")
            slot = _Slot(items, route_key, route.path, f"routes[{index}].policy")
            methods = route.methods
            assert methods is None or isinstance(methods, frozenset)
            self._routes.append((_compile(route.path), methods, slot))
        for slot in (self._default, *(entry[2] for entry in self._routes)):
            for item in slot.items:
                if isinstance(item, str) and (registry is None or item not in registry):
                    expected = (
                        "a registry= holding it" if registry is None else "a name in the registry"
                    )
                    raise ConfigError(slot.where, item, expected)
            self.plan(slot)  # build now: bad policies fail here, not on a request

    @property
    def routed(self) -> bool:
        return bool(self._routes)

    def default(self) -> Plan | None:
        plan = self.plan(self._default)
        return None if plan.empty else plan

    def match(self, method: str, path: str) -> Plan | None:
        """The plan for a request (``None``: nothing to apply)."""
        slot = self._default
        for matches, methods, route_slot in self._routes:
            if (methods is None or method in methods) and matches(path):
                slot = route_slot
                break
        plan = slot.plan if not slot.named else None
        if plan is None:
            plan = self.plan(slot)
        return None if plan.empty else plan

    def plans(self) -> list[Plan]:
        """The plans of the default and of every route, resolved now (the dashboard
        lists their policies)."""
        slots = (self._default, *(entry[2] for entry in self._routes))
        return [self.plan(slot) for slot in slots]

    def plan(self, slot: _Slot) -> Plan:
        plan = slot.plan
        if not slot.named:
            if plan is None:
                items: Any = slot.items
                plan = slot.plan = self._build(items, slot)
            return plan
        registry = self.registry
        assert registry is not None
        source = tuple(registry[item] if isinstance(item, str) else item for item in slot.items)
        if (
            plan is None
            or len(plan.source) != len(source)
            or any(a is not b for a, b in zip(plan.source, source, strict=True))
        ):
            # A reloaded registry hands out new policies.
            plan = slot.plan = self._build(source, slot)
        return plan

    def _build(self, source: tuple[Policy, ...], slot: _Slot) -> Plan:
        named = tuple(isinstance(item, str) for item in slot.items)
        return Plan(source, key=slot.key, route=slot.route, where=slot.where, named=named)
