"""Policy files: named policies and pipelines from YAML, TOML or JSON.

::

    import resilient as rs

    registry = rs.load_config("policies.yaml")
    payments = registry["payments"]          # a resilient.Pipeline, built once, shared

    @payments
    def charge(order): ...

The file is validated into the dataclasses of this module (pydantic is imported
only then: install the ``config`` extra, and ``yaml`` for YAML files); every
problem is reported at once, each with its file, line and dotted path.
``resilient check``, ``resilient show`` and ``resilient schema`` work on the
same files. See ``docs/config.md`` for the reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._registry import LivePolicy, Registry, ReloadResult, Watcher, load_config

if TYPE_CHECKING:
    from ._lint import Estimate, LintWarning
    from ._schema import (
        DEFAULT_ORDER,
        AdaptiveConcurrencySettings,
        AsgiRoute,
        BackendSettings,
        BackoffSettings,
        BulkheadSettings,
        CircuitBreakerSettings,
        ConfigDocument,
        FallbackSettings,
        GrpcRoute,
        HttpxRoute,
        PolicySettings,
        RateLimitSettings,
        RetryBudgetSettings,
        RetrySettings,
        Routes,
        ThrottleSettings,
        TimeoutSettings,
        WindowSettings,
    )

__all__ = [
    "AdaptiveConcurrencySettings",
    "AsgiRoute",
    "BackendSettings",
    "BackoffSettings",
    "BulkheadSettings",
    "CircuitBreakerSettings",
    "ConfigDocument",
    "DEFAULT_ORDER",
    "Estimate",
    "FallbackSettings",
    "GrpcRoute",
    "HttpxRoute",
    "json_schema",
    "LintWarning",
    "LivePolicy",
    "load_config",
    "PolicySettings",
    "RateLimitSettings",
    "Registry",
    "ReloadResult",
    "RetryBudgetSettings",
    "RetrySettings",
    "Routes",
    "ThrottleSettings",
    "TimeoutSettings",
    "Watcher",
    "WindowSettings",
]

# The settings dataclasses and the lint types are imported on first use: ``import
# resilient`` imports this package (for ``load_config`` and ``Registry``) and should not
# pay for them.
_LAZY = {"Estimate": "._lint", "LintWarning": "._lint"}


def __getattr__(name: str) -> Any:
    if name in __all__:
        import importlib

        module = importlib.import_module(_LAZY.get(name, "._schema"), __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a policy file, for editors and CI.

    Point an editor at it (``# yaml-language-server: $schema=policies.schema.json``
    in YAML, ``"$schema"`` in JSON) after ``resilient schema > policies.schema.json``.
    Needs pydantic (the ``config`` extra).
    """
    from ._render import json_schema as build

    return build()
