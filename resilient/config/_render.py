"""Policy files shown to people and tools: ``resilient show``, the JSON Schema, the reference.

Backend URLs are always shown with their credentials redacted.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._schema import (
    AdaptiveConcurrencySettings,
    BackendSettings,
    CircuitBreakerSettings,
    ConfigDocument,
    FallbackSettings,
    PolicySettings,
    RateLimitSettings,
    RetryBudgetSettings,
    RetrySettings,
    ThrottleSettings,
)

if TYPE_CHECKING:
    from ._registry import Registry

__all__ = ["describe", "json_schema", "redact_url", "reference_markdown", "to_json"]

_SECRET_PARAMS = re.compile(r"pass|secret|token|key|auth|credential", re.IGNORECASE)


def redact_url(url: str) -> str:
    """*url* with its password (and secret-looking query values) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            user, colon, _password = userinfo.partition(":")
            netloc = f"{user}:***@{host}" if colon else f"***@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, "***" if _SECRET_PARAMS.search(k) else v) for k, v in pairs], safe="*"
            )
        if netloc == parts.netloc and query == parts.query:
            return url
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<a URL that cannot be parsed>"


# -- resilient show --------------------------------------------------------------------------


def seconds(value: float | None) -> str:
    """A duration the way a file would say it (``250ms``, ``2s``, ``1.5min``)."""
    if value is None:
        return "none"
    if math.isinf(value):
        return "unbounded"
    if value == 0:
        return "0s"
    if value < 1:
        return f"{value * 1000:g}ms"
    if value < 120 or value % 60:
        return f"{value:g}s"
    if value < 7200 or value % 3600:
        return f"{value / 60:g}min"
    return f"{value / 3600:g}h"


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(names) if names else "nothing"


def _retry(r: RetrySettings) -> str:
    b = r.backoff
    if b.increment:
        shape = f"linear backoff {seconds(b.initial)} + {seconds(b.increment)}"
    elif b.multiplier == 1:
        shape = f"constant backoff {seconds(b.initial)}"
    else:
        shape = f"exponential backoff {seconds(b.initial)} x{b.multiplier:g}"
    text = (
        f"{r.attempts} attempts, {shape} up to {seconds(b.maximum)}, "
        f"{'no' if b.jitter == 'none' else b.jitter} jitter; "
        f"on {_names(r.retry_on)}"
    )
    if r.deadline is not None:
        text += f"; deadline {seconds(r.deadline)}"
    text += f"; Retry-After up to {seconds(r.max_retry_after)}"
    if r.retry_rejected:
        text += "; retries rejections"
    if isinstance(r.budget, str):
        text += f"; shared budget {r.budget}"
    elif r.budget is not None:
        text += f"; budget {_budget(r.budget)}"
    return text


def _budget(b: RetryBudgetSettings) -> str:
    text = f"{b.ratio:.0%} of calls + {b.min_per_second:g}/s over {seconds(b.ttl)}"
    if b.backend is not None:
        text += f"; backend {b.backend}"
    return text


def _adaptive(a: AdaptiveConcurrencySettings) -> str:
    text = f"{a.algorithm} limit {a.initial_limit} in [{a.min_limit}, {a.max_limit}]"
    if a.max_queued:
        wait = "no limit" if a.max_wait is None else seconds(a.max_wait)
        text += f", {a.max_queued} queued (wait {wait})"
    return f"{text}; drops on {_names(a.drop_on)}"


def _throttle(t: ThrottleSettings) -> str:
    text = f"k={t.k:g} over {seconds(t.window)}"
    if t.max_reject < 1:
        text += f", sheds at most {t.max_reject:.0%}"
    return f"{text}; refusals: {_names(t.rejected_on)}"


def _breaker(c: CircuitBreakerSettings) -> str:
    w = c.window
    window = (
        f"last {w.size} calls" if w.size is not None else f"calls of the last {seconds(w.seconds)}"
    )
    text = (
        f"opens at {c.failure_rate:.0%} failures or {c.slow_call_rate:.0%} slow calls "
        f"(> {seconds(c.slow_call_duration)}) of the {window}, after {c.minimum_calls} calls"
    )
    if c.consecutive_failures is not None:
        text += f" or {c.consecutive_failures} failures in a row"
    text += f"; open {seconds(c.open_for)}"
    if c.open_for_multiplier != 1:
        text += f" x{c.open_for_multiplier:g} per re-open"
        if c.max_open_for is not None:
            text += f" up to {seconds(c.max_open_for)}"
    text += f"; {c.half_open_calls} probes; records {_names(c.record)}"
    if c.ignore:
        text += f", ignores {_names(c.ignore)}"
    if c.open_on_retry_after:
        text += f"; opens on Retry-After up to {seconds(c.max_retry_after)}"
    if c.observe_only:
        text += "; observe only"
    if c.backend is not None:
        text += f"; shared through backend {c.backend}"
    return text


def _limiter(r: RateLimitSettings, backends: dict[str, BackendSettings]) -> str:
    text = f"{r.algorithm} {r.rate}"
    if r.algorithm == "token_bucket" and r.burst is not None:
        text += f", burst {r.burst}"
    if r.algorithm == "sliding_window":
        text += ", precise" if r.precise else ", approximate"
    if r.max_wait:
        text += f", waits up to {seconds(r.max_wait)}"
    if r.backend is not None:
        backend = backends.get(r.backend)
        url = redact_url(backend.url) if backend is not None else "?"
        text += f"; backend {r.backend} ({url})"
    else:
        text += "; in memory"
    return text


def _fallback(f: FallbackSettings) -> str:
    what = f"calls {f.handler}" if f.handler is not None else f"returns {f.value!r}"
    return f"{what} on {_names(f.on)}"


def _step(policy: PolicySettings, step: str, document: ConfigDocument) -> str:
    if step == "timeout":
        assert policy.timeout is not None
        return f"total {seconds(policy.timeout.total)}"
    if step == "attempt_timeout":
        assert policy.timeout is not None
        return f"each attempt {seconds(policy.timeout.attempt)}"
    if step == "retry":
        assert policy.retry is not None
        return _retry(policy.retry)
    if step == "circuit_breaker":
        assert policy.circuit_breaker is not None
        return _breaker(policy.circuit_breaker)
    if step == "rate_limit":
        assert policy.rate_limit is not None
        return _limiter(policy.rate_limit, document.backends)
    if step == "adaptive_concurrency":
        assert policy.adaptive_concurrency is not None
        return _adaptive(policy.adaptive_concurrency)
    if step == "throttle":
        assert policy.throttle is not None
        return _throttle(policy.throttle)
    if step == "bulkhead":
        b = policy.bulkhead
        assert b is not None
        text = f"{b.max_concurrent} in flight"
        if b.max_queued:
            wait = "no limit" if b.max_wait is None else seconds(b.max_wait)
            text += f", {b.max_queued} queued (wait {wait})"
        return text
    assert policy.fallback is not None
    return _fallback(policy.fallback)


def describe(registry: Registry, name: str | None = None) -> str:
    """The resolved pipelines, outermost first, with estimates and warnings."""
    document = registry.document
    names = [name] if name is not None else list(document.policies)
    if name is not None:
        registry.require(name)
    lines: list[str] = []
    if name is None and document.backends:
        lines.append("backends:")
        for backend_name, backend in document.backends.items():
            extra = [
                f"{field}={getattr(backend, field)}"
                for field in ("on_backend_error", "prefix")
                if getattr(backend, field) is not None
            ]
            suffix = f" ({', '.join(extra)})" if extra else ""
            lines.append(f"  {backend_name}: {redact_url(backend.url)}{suffix}")
        lines.append("")
    if name is None and document.budgets:
        lines.append("budgets:")
        for budget_name, budget in document.budgets.items():
            lines.append(f"  {budget_name}: {_budget(budget)}")
        lines.append("")
    for policy_name in names:
        policy = document.policies[policy_name]
        head = f"policy {policy_name}"
        if policy.extends:
            head += f" (extends {', '.join(policy.extends)})"
        if policy.description:
            head += f": {policy.description}"
        lines.append(head)
        steps = policy.steps()
        if not steps:
            lines.append("  (no steps: calls pass straight through)")
        width = max((len(s) for s in steps), default=0)
        for index, step in enumerate(steps, start=1):
            lines.append(f"  {index}. {step:<{width}}  {_step(policy, step, document)}")
        lines.append(f"  {registry.estimate(policy_name)}")
        prefix = f"policies.{policy_name}"
        for warning in registry.warnings:
            if warning.path == prefix or warning.path.startswith(prefix + "."):
                lines.append(f"  warning: {warning.message} [{warning.code}]")
        lines.append("")
    routes = document.routes
    if name is None and (routes.httpx or routes.asgi or routes.grpc):
        lines.append("routes:")
        for r in routes.httpx:
            methods = ",".join(r.methods) or "*"
            lines.append(f"  httpx {methods} {r.host or '*'}{r.path or ''} -> {r.policy}")
        for a in routes.asgi:
            methods = ",".join(a.methods) or "*"
            key = f" per {a.key}" if a.key else ""
            lines.append(f"  asgi  {methods} {a.path}{key} -> {a.policy}")
        for g in routes.grpc:
            side = f" ({g.side})" if g.side else ""
            lines.append(f"  grpc  {g.pattern}{side} -> {g.policy}")
        lines.append("")
    if name is None:
        other = [w for w in registry.warnings if not w.path.startswith("policies.")]
        for warning in other:
            lines.append(f"warning: {warning.path}: {warning.message} [{warning.code}]")
    return "\n".join(lines).rstrip() + "\n"


def to_json(registry: Registry, name: str | None = None) -> dict[str, Any]:
    """The resolved document as JSON-ready data (URLs redacted), with estimates."""
    document = registry.document
    data: dict[str, Any] = _plain(dataclasses.asdict(document))
    data.pop("bases", None)
    data.pop("defaults", None)
    for backend in data["backends"].values():
        backend["url"] = redact_url(backend["url"])
    for policy_name, policy in data["policies"].items():
        policy["order"] = list(document.policies[policy_name].steps())
        e = registry.estimate(policy_name)
        policy["estimate"] = {
            "latency": None if math.isinf(e.latency) else e.latency,
            "latency_with_hints": None
            if math.isinf(e.latency_with_hints)
            else e.latency_with_hints,
            "amplification": e.amplification,
            "budgeted_amplification": e.budgeted_amplification,
        }
    if name is not None:
        registry.require(name)
        return {"policies": {name: data["policies"][name]}}
    data["warnings"] = [
        {"code": w.code, "path": w.path, "line": w.line, "message": w.message}
        for w in registry.warnings
    ]
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# -- JSON Schema -----------------------------------------------------------------------------

_INTERPOLATED = {"type": "string", "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"}


@functools.cache
def _schema() -> str:
    from pydantic import TypeAdapter

    raw = TypeAdapter(ConfigDocument).json_schema()
    defs = raw.setdefault("$defs", {})
    for name in list(defs):
        partial = _partial(copy.deepcopy(defs[name]))
        partial["title"] = f"{defs[name].get('title', name)} (partial)"
        defs[f"Partial{name}"] = partial
    schema = _tidy(raw)
    schema["properties"] = {
        "$schema": {"type": "string", "description": "The JSON Schema of this file (ignored)."},
        **schema["properties"],
    }
    out = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "resilient policy file",
        **{k: v for k, v in schema.items() if k != "title"},
    }
    return json.dumps(out, sort_keys=False)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file (a fresh copy)."""
    result: dict[str, Any] = json.loads(_schema())
    return result


def _partial(node: Any) -> Any:
    """*node* with nothing required and every reference pointing at a partial copy."""
    if isinstance(node, dict):
        out = {k: _partial(v) for k, v in node.items() if k != "required"}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out["$ref"] = "#/$defs/Partial" + ref.removeprefix("#/$defs/")
        return out
    if isinstance(node, list):
        return [_partial(v) for v in node]
    return node


def _tidy(node: Any) -> Any:
    """Flatten nested ``anyOf``, resolve ``x-partial``, accept ``${VAR}`` for non-strings,
    and put descriptions on one line."""
    if isinstance(node, list):
        return [_tidy(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _tidy(v) for k, v in node.items()}
    partial = node.pop("x-partial", None)
    if partial is not None:
        node["$ref"] = f"#/$defs/Partial{partial}"
    if "anyOf" in node:
        flat: list[Any] = []
        for option in node["anyOf"]:
            if isinstance(option, dict) and set(option) == {"anyOf"}:
                flat.extend(option["anyOf"])
            elif option not in flat:
                flat.append(option)
        node["anyOf"] = [o for i, o in enumerate(flat) if o not in flat[:i]]
    if isinstance(node.get("description"), str):
        node["description"] = " ".join(node["description"].split())
    if node.get("type") in ("integer", "number", "boolean") and "anyOf" not in node:
        scalar = {k: v for k, v in node.items() if k not in ("description", "default", "title")}
        rest = {k: v for k, v in node.items() if k in ("description", "default", "title")}
        return {"anyOf": [scalar, _INTERPOLATED], **rest}
    return node


# -- the reference in docs/config.md ---------------------------------------------------------

_REFERENCE_ORDER = (
    ("ConfigDocument", "The file"),
    ("BackendSettings", "`backends.<name>`"),
    ("PolicySettings", "`policies.<name>` (and `bases.<name>`)"),
    ("FallbackSettings", "`fallback`"),
    ("RateLimitSettings", "`rate_limit`"),
    ("BulkheadSettings", "`bulkhead`"),
    ("AdaptiveConcurrencySettings", "`adaptive_concurrency`"),
    ("TimeoutSettings", "`timeout`"),
    ("RetrySettings", "`retry`"),
    ("BackoffSettings", "`retry.backoff`"),
    ("RetryBudgetSettings", "`retry.budget` (and `budgets.<name>`)"),
    ("ThrottleSettings", "`throttle`"),
    ("CircuitBreakerSettings", "`circuit_breaker`"),
    ("WindowSettings", "`circuit_breaker.window`"),
    ("Routes", "`routes`"),
    ("HttpxRoute", "`routes.httpx[]`"),
    ("AsgiRoute", "`routes.asgi[]`"),
    ("GrpcRoute", "`routes.grpc[]`"),
)


def reference_markdown() -> str:
    """The per-key reference of ``docs/config.md``, generated from the JSON Schema."""
    schema = json_schema()
    defs = schema["$defs"]
    out: list[str] = []
    for name, heading in _REFERENCE_ORDER:
        node = schema if name == "ConfigDocument" else defs[name]
        out.append(f"### {heading}")
        out.append("")
        out.append(_md(node.get("description", "")))
        out.append("")
        out.append("| Key | Type | Default | Description |")
        out.append("|---|---|---|---|")
        required = set(node.get("required", ()))
        for key, prop in node["properties"].items():
            if key == "$schema":
                continue
            default = "required" if key in required else _default(prop)
            text = _md(prop.get("description", ""))
            out.append(f"| `{key}` | {_type(prop, defs)} | {default} | {text} |")
        out.append("")
    return "\n".join(out)


def _md(text: str) -> str:
    return text.replace("``", "`").replace("|", "\\|")


def _default(prop: dict[str, Any]) -> str:
    if "default" not in prop:
        return "empty"  # a default_factory: an empty mapping or list
    value = prop["default"]
    if value == {} or value == []:
        return "empty"
    return f"`{json.dumps(value)}`"


_LABELS = {
    "BackoffSettings": "[backoff](#retrybackoff)",
    "RetryBudgetSettings": "[budget](#retrybudget-and-budgetsname)",
    "WindowSettings": "[window](#circuit_breakerwindow)",
    "BackendSettings": "[backend](#backendsname)",
    "PolicySettings": "[policy](#policiesname-and-basesname)",
    "PartialPolicySettings": "partial [policy](#policiesname-and-basesname)",
    "Routes": "[routes](#routes)",
    "HttpxRoute": "[httpx route](#routeshttpx)",
    "AsgiRoute": "[ASGI route](#routesasgi)",
    "GrpcRoute": "[gRPC route](#routesgrpc)",
    "FallbackSettings": "[fallback](#fallback)",
    "RateLimitSettings": "[rate_limit](#rate_limit)",
    "BulkheadSettings": "[bulkhead](#bulkhead)",
    "AdaptiveConcurrencySettings": "[adaptive_concurrency](#adaptive_concurrency)",
    "ThrottleSettings": "[throttle](#throttle)",
    "TimeoutSettings": "[timeout](#timeout)",
    "RetrySettings": "[retry](#retry)",
    "CircuitBreakerSettings": "[circuit_breaker](#circuit_breaker)",
}


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    kind = prop.get("x-type")
    if isinstance(kind, str):
        return kind
    if "$ref" in prop:
        return _LABELS.get(prop["$ref"].rsplit("/", 1)[-1], "mapping")
    if "anyOf" in prop:
        parts = [_type(option, defs) for option in prop["anyOf"] if option != _INTERPOLATED]
        unique = [p for i, p in enumerate(parts) if p not in parts[:i]]
        return " or ".join(unique)
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    kind = prop.get("type")
    if kind == "array":
        items = prop.get("items", {})
        return f"list of {_type(items, defs)}" if items else "list"
    if kind == "object":
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict):
            return f"mapping of name to {_type(extra, defs)}"
        return "mapping"
    if kind == "integer":
        bounds = _bounds(prop)
        return f"integer{bounds}"
    if kind == "number":
        return f"number{_bounds(prop)}"
    if kind == "boolean":
        return "boolean"
    if kind == "null":
        return "null"
    if kind == "string":
        return "string"
    if isinstance(kind, list):
        return " or ".join(str(k) for k in kind)
    return "any"


def _bounds(prop: dict[str, Any]) -> str:
    parts = []
    if "minimum" in prop:
        parts.append(f"≥ {prop['minimum']:g}")
    if "exclusiveMinimum" in prop:
        parts.append(f"> {prop['exclusiveMinimum']:g}")
    if "maximum" in prop:
        parts.append(f"≤ {prop['maximum']:g}")
    return f" ({', '.join(parts)})" if parts else ""
