"""The dashboard of a ``ResilienceMiddleware``: what it shows is read from the
middleware on every frame (its registry, its routes' and its own policies), so
reloads and new plans are followed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._pipeline import Policy
from ._app import Auth, DashboardApp
from ._snapshot import _is_policy

__all__ = ["middleware_dashboard"]


def middleware_dashboard(
    middleware: Any, path: str, auth: Auth | None, **options: Any
) -> DashboardApp:
    """A :class:`DashboardApp` at *path* showing *middleware*'s policies."""

    def source() -> dict[str, Policy]:
        items: dict[str, Policy] = {}
        registry = getattr(middleware, "_registry", None)
        if isinstance(registry, Mapping):
            for name in registry:
                policy = registry[name]
                if _is_policy(policy):
                    items[str(name)] = policy
        shown = {id(policy) for policy in items.values()}
        table = getattr(middleware, "_table", None)
        plans = table.plans() if table is not None else ()
        for plan in plans:
            for policy in plan.source:
                if id(policy) in shown:
                    continue
                shown.add(id(policy))
                name = getattr(policy, "name", None) or type(policy).__name__
                unique, count = name, 1
                while unique in items:
                    count += 1
                    unique = f"{name}#{count}"
                items[unique] = policy
        return items

    return DashboardApp(source, path=path, auth=auth, **options)
