"""Validate parsed data into a :class:`ConfigDocument`, reporting every error at once.

The steps: interpolate ``${ENV}``; expand section shorthands; resolve
``extends`` and ``defaults`` on the raw mappings (remembering where each value
came from); validate the whole document with pydantic; validate the bases and
``defaults`` on their own (a base may be incomplete, so only a *missing* key is
forgiven there); then check the names that refer to other parts of the file.

Each error is reported once, at the place in the file that holds the bad value:
an inherited value is reported where it is written, not in every policy that
inherits it.
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any, TypeAlias

from .._errors import _MISSING, ConfigError
from ._errors import FileConfigError, problem
from ._parse import Document, Lines, interpolate
from ._schema import (
    SECTIONS,
    SHORTHANDS,
    ConfigDocument,
    PolicySettings,
    SectionName,
    _Scalar,
    expand_shorthand,
)

__all__ = ["Locator", "validate"]

Key: TypeAlias = tuple[str, ...]
_TOP_LEVEL = "backends, budgets, defaults, bases, policies, routes"
_ATOMIC = {("circuit_breaker", "window")}  # replaced whole by an override, never merged


@functools.cache
def _adapter(tp: Any) -> Any:
    try:
        from pydantic import TypeAdapter
    except ImportError:
        msg = "validating a policy file needs pydantic: pip install 'resilient-middleware[config]'"
        raise ImportError(msg) from None
    return TypeAdapter(tp)


def validate(doc: Document, env: Mapping[str, str]) -> tuple[ConfigDocument, Locator]:
    """The validated document and its locator, or a ``ConfigError`` listing every problem."""
    validation = _Validation(doc, env)
    document = validation.run()
    return document, Locator(doc.file, doc.lines, validation.layers)


class Locator:
    """Finds the place in the file behind a path of the resolved document."""

    __slots__ = ("file", "layers", "lines")

    def __init__(self, file: str | None, lines: Lines, layers: dict[str, _Layer]) -> None:
        self.file = file
        self.lines = lines
        self.layers = layers

    def written_at(self, path: Key) -> Key:
        """Where a value of a resolved policy was written (a base, ``defaults``...)."""
        if len(path) >= 2 and path[0] == "policies":
            layer = self.layers.get(path[1])
            if layer is not None:
                found = layer.find(path[2:])
                if found is not None:
                    return found
        return path

    def error(self, path: Key, value: Any = _MISSING, expected: str = "") -> FileConfigError:
        """A mismatch at *path* (a resolved path), reported where the value was written."""
        at = self.written_at(path)
        return FileConfigError(
            ".".join(at), value, expected, file=self.file, line=self.lines.find(at)
        )

    def line(self, path: Key) -> int | None:
        return self.lines.find(self.written_at(path))


class _Layer:
    """A mapping plus, for every path in it, the absolute path it was written at."""

    __slots__ = ("origin", "value")

    def __init__(self, value: dict[Any, Any], origin: dict[Key, Key]) -> None:
        self.value = value
        self.origin = origin

    @classmethod
    def written_at(cls, value: dict[Any, Any], at: Key) -> _Layer:
        origin: dict[Key, Key] = {}
        _record(origin, (), value, at)
        return cls(value, origin)

    def find(self, rel: Key) -> Key | None:
        for cut in range(len(rel), 0, -1):
            found = self.origin.get(rel[:cut])
            if found is not None:
                return found + rel[cut:]
        return None


def _record(origin: dict[Key, Key], rel: Key, value: Any, at: Key) -> None:
    origin[rel] = at
    if isinstance(value, dict):
        for k, v in value.items():
            _record(origin, (*rel, str(k)), v, (*at, str(k)))


def _overlay(base: _Layer, top: _Layer, rel: Key = ()) -> _Layer:
    """*top* over *base*: mappings merge key by key, anything else replaces."""
    value = dict(base.value)
    origin = {k: v for k, v in base.origin.items() if k[: len(rel)] == rel}
    for key, item in top.value.items():
        path = (*rel, str(key))
        below = value.get(key)
        if isinstance(item, dict) and isinstance(below, dict) and path[-2:] not in _ATOMIC:
            merged = _overlay(
                _Layer(below, {k: v for k, v in origin.items() if k[: len(path)] == path}),
                _Layer(item, {k: v for k, v in top.origin.items() if k[: len(path)] == path}),
                path,
            )
            value[key] = merged.value
            origin = {k: v for k, v in origin.items() if k[: len(path)] != path}
            origin.update(merged.origin)
            origin[path] = top.origin.get(path, origin.get(path, path))
        else:
            value[key] = item
            origin = {k: v for k, v in origin.items() if k[: len(path)] != path}
            origin.update({k: v for k, v in top.origin.items() if k[: len(path)] == path})
    return _Layer(value, origin)


def _normalized(policy: Any) -> Any:
    """Expand section shorthands; ``false``/``null`` sections become ``None`` (removed)."""
    if not isinstance(policy, dict):
        return policy
    out = dict(policy)
    for section in SECTIONS:
        if section in out:
            raw = out[section]
            out[section] = None if raw is False else expand_shorthand(SHORTHANDS[section], raw)
    return out


class _Validation:
    def __init__(self, doc: Document, env: Mapping[str, str]) -> None:
        self.doc = doc
        self.env = env
        self.file = doc.file
        self.lines: Lines = doc.lines
        self.errors: list[ConfigError] = []
        self.seen: set[tuple[str, str, str, str]] = set()
        self.layers: dict[str, _Layer] = {}
        self.unresolved: list[str] = []
        self.cycles: set[frozenset[str]] = set()

    # -- reporting ---------------------------------------------------------------------------

    def add(self, error: ConfigError) -> None:
        for one in error.errors:
            key = (one.path, one.expected, getattr(one, "problem", ""), repr(one.value))
            if any(one.path == p or one.path.startswith(p + ".") for p in self.unresolved):
                continue  # the unset ${VAR} under it is reported already
            if key not in self.seen:
                self.seen.add(key)
                self.errors.append(one)

    def error(self, path: Key, text: str, **kw: Any) -> None:
        self.add(problem(".".join(path), text, file=self.file, line=self.lines.find(path), **kw))

    def mismatch(self, path: Key, value: Any, expected: str) -> None:
        line = self.lines.find(path)
        self.add(FileConfigError(".".join(path), value, expected, file=self.file, line=line))

    # -- the steps ---------------------------------------------------------------------------

    def run(self) -> ConfigDocument:
        data = self.doc.data
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.error((), f"expected a mapping at the top level ({_TOP_LEVEL})", value=data)
            raise ConfigError.combine(self.errors)
        data = {k: v for k, v in data.items() if k != "$schema"}
        data, env_errors = interpolate(data, self.env, self.lines, self.file)
        for err in env_errors:
            self.add(err)
        self.unresolved = [err.path for err in env_errors]
        defaults = _normalized(data.get("defaults"))
        bases = data.get("bases")
        policies = data.get("policies")
        bases = {k: _normalized(v) for k, v in bases.items()} if isinstance(bases, dict) else bases
        if isinstance(policies, dict):
            policies = {k: _normalized(v) for k, v in policies.items()}
        resolved = self.resolve(bases, policies, defaults)
        document = dict(data)
        if "policies" in data:
            document["policies"] = resolved
        if "defaults" in data:
            document["defaults"] = defaults
        if "bases" in data:
            document["bases"] = bases
        result = self.check(ConfigDocument, document, (), resolved=True)
        if isinstance(defaults, dict):
            self.check_partial(defaults, ("defaults",))
        if isinstance(bases, dict):
            for name, base in bases.items():
                if isinstance(base, dict):
                    self.check_partial(base, ("bases", str(name)))
        self.check_references(data, resolved)
        if self.errors or result is None:
            self.errors.sort(key=lambda e: (e.line is None, e.line or 0))
            raise ConfigError.combine(self.errors)
        return typing.cast(ConfigDocument, result)

    def resolve(self, bases: Any, policies: Any, defaults: Any) -> Any:
        """Each policy with its ``extends`` and the ``defaults`` applied."""
        if not isinstance(policies, dict):
            return policies
        tables: dict[str, tuple[str, Any]] = {}
        if isinstance(bases, dict):
            for name, base in bases.items():
                tables[str(name)] = ("bases", base)
        for name, policy in policies.items():
            if str(name) in tables:
                self.error(
                    ("policies", str(name)),
                    f"a base is also named {str(name)!r}; names must be unique across bases "
                    f"and policies",
                )
            tables[str(name)] = ("policies", policy)
        default_layer = (
            _Layer.written_at(defaults, ("defaults",)) if isinstance(defaults, dict) else None
        )
        resolved: dict[Any, Any] = {}
        for name, policy in policies.items():
            if not isinstance(policy, dict):
                resolved[name] = policy
                continue
            layer = self.inherit(str(name), tables, ())
            if default_layer is not None:
                layer = _with_defaults(layer, default_layer)
            value = {k: v for k, v in layer.value.items() if not (k in SECTIONS and v is None)}
            for own in ("extends", "description"):  # about the policy itself: not inherited
                if own in policy:
                    value[own] = policy[own]
                else:
                    value.pop(own, None)
            self.layers[str(name)] = _Layer(value, layer.origin)
            resolved[name] = value
        return resolved

    def inherit(self, name: str, tables: dict[str, tuple[str, Any]], chain: Key) -> _Layer:
        kind, raw = tables[name]
        at: Key = (kind, name)
        own = {k: v for k, v in raw.items() if k != "extends"}
        layer = _Layer({}, {})
        parents = raw.get("extends")
        if isinstance(parents, str):
            parents = [parents]
        if parents is None:
            parents = []
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            self.mismatch((*at, "extends"), raw.get("extends"), "a name, or a list of names")
            parents = []
        for parent in parents:
            if parent == name or parent in chain:
                members = [*chain[chain.index(parent) :], name] if parent in chain else [name]
                if frozenset(members) not in self.cycles:  # report each cycle once
                    self.cycles.add(frozenset(members))
                    cycle = " -> ".join([*members, parent])
                    self.error((*at, "extends"), f"inheritance cycle: {cycle}")
                continue
            if parent not in tables:
                self.mismatch(
                    (*at, "extends"), parent, _one_of("a base or a policy", list(tables), parent)
                )
                continue
            if not isinstance(tables[parent][1], dict):
                continue  # reported where it is written
            layer = _overlay(layer, self.inherit(parent, tables, (*chain, name)))
        return _overlay(layer, _Layer.written_at(own, at))

    def check(self, root: Any, data: Any, at: Key, *, resolved: bool = False) -> Any:
        """Validate *data* as *root*; report errors (with *at* prefixed); the result or None."""
        from pydantic import ValidationError

        try:
            return _adapter(root).validate_python(data)
        except ValidationError as exc:
            for detail in exc.errors(include_url=False):
                self.report(root, at, detail, resolved=resolved)
        except RecursionError:
            self.error(at, "nested too deeply")
        return None

    def check_partial(self, policy: dict[Any, Any], at: Key) -> None:
        """A base or the defaults: like a policy, but keys may be missing."""
        from pydantic import ValidationError

        if at == ("defaults",):
            for key in ("extends", "order", "description"):
                if key in policy:
                    self.error(
                        (*at, key),
                        "not allowed in defaults",
                        expected=f"defaults for the sections ({', '.join(SECTIONS)})",
                    )
        body = {k: v for k, v in policy.items() if k not in ("order", "extends")}
        body = {k: v for k, v in body.items() if not (k in SECTIONS and v is None)}
        if "order" in policy:
            self.check(tuple[SectionName, ...] | None, policy["order"], (*at, "order"))
        try:
            _adapter(PolicySettings).validate_python(body)
        except ValidationError as exc:
            for detail in exc.errors(include_url=False):
                if detail["type"] != "missing":
                    self.report(PolicySettings, at, detail, resolved=False)

    def report(self, root: Any, at: Key, detail: Any, *, resolved: bool) -> None:
        loc = tuple(detail["loc"])
        key_error = bool(loc) and loc[-1] == "[key]"
        if key_error:
            loc = loc[:-1]
        rel: Key = tuple(str(p) for p in loc)
        kind = detail["type"]
        value = detail.get("input")
        if key_error:
            self.mismatch(self.where((*at, *rel), resolved, kind), loc[-1], "a string key")
            return
        if kind == "value_error" and isinstance(detail.get("ctx", {}).get("error"), ConfigError):
            # A check across fields (``order``, a window's size or seconds) is about the
            # policy as resolved: report it there, not in the base that set one of them.
            across = _field_names(_annotation_at(root, loc)) != []
            for err in detail["ctx"]["error"].errors:
                sub = tuple(p for p in err.path.split(".") if p) if err.path else ()
                path = (*at, *rel, *sub)
                if not across:
                    path = self.where(path, resolved, kind)
                if err._has_value:
                    self.mismatch(path, err.value, err.expected)
                else:
                    self.error(path, "", expected=err.expected)
            return
        path = self.where((*at, *rel), resolved, kind)
        if kind in ("unexpected_keyword_argument", "extra_forbidden"):
            known = _field_names(_annotation_at(root, loc[:-1]))
            self.error(path, "unknown key", expected=_one_of("one of", known, rel[-1], keys=True))
        elif kind == "missing":
            self.error(path, "missing required key", expected=_expected(root, loc))
        elif kind == "literal_error":
            choices = _literal_choices(_annotation_at(root, loc))
            self.mismatch(path, value, _one_of("one of", choices, value, quoted=True))
        else:
            self.mismatch(path, value, _TYPE_EXPECTED.get(kind) or _plain(detail))

    def where(self, path: Key, resolved: bool, kind: str) -> Key:
        """The place in the file to report: where the value was written (for a policy built
        from bases and defaults), except for a missing key, reported in the policy."""
        if resolved and len(path) >= 2 and path[0] == "policies" and kind != "missing":
            layer = self.layers.get(path[1])
            if layer is not None:
                found = layer.find(path[2:])
                if found is not None:
                    return found
        return path

    def check_references(self, data: dict[Any, Any], policies: Any) -> None:
        """Names that must refer to something else in the file (checked on the raw data,
        so that they are reported along with every other error)."""
        backends = data.get("backends")
        backend_names = [str(k) for k in backends] if isinstance(backends, dict) else []
        policy_names = [str(k) for k in policies] if isinstance(policies, dict) else []
        budgets = data.get("budgets")
        budget_names = [str(k) for k in budgets] if isinstance(budgets, dict) else []
        for name, budget in budgets.items() if isinstance(budgets, dict) else ():
            backend = budget.get("backend") if isinstance(budget, dict) else None
            if isinstance(backend, str) and backend not in backend_names:
                at: Key = ("budgets", str(name), "backend")
                self.mismatch(at, backend, _one_of("a backend name", backend_names, backend))
        for name, policy in policies.items() if isinstance(policies, dict) else ():
            for step in ("rate_limit", "circuit_breaker"):
                section = policy.get(step) if isinstance(policy, dict) else None
                backend = section.get("backend") if isinstance(section, dict) else None
                if isinstance(backend, str) and backend not in backend_names:
                    path = self.where(("policies", str(name), step, "backend"), True, "")
                    self.mismatch(path, backend, _one_of("a backend name", backend_names, backend))
            retry = policy.get("retry") if isinstance(policy, dict) else None
            budget = retry.get("budget") if isinstance(retry, dict) else None
            if isinstance(budget, str) and budget.strip() not in budget_names:
                at = self.where(("policies", str(name), "retry", "budget"), True, "")
                self.mismatch(at, budget, _one_of("a budget name", budget_names, budget))
            backend = budget.get("backend") if isinstance(budget, dict) else None
            if isinstance(backend, str) and backend not in backend_names:
                at = self.where(("policies", str(name), "retry", "budget", "backend"), True, "")
                self.mismatch(at, backend, _one_of("a backend name", backend_names, backend))
        routes = data.get("routes")
        for adapter in ("httpx", "asgi", "grpc"):
            table = routes.get(adapter) if isinstance(routes, dict) else None
            for index, route in enumerate(table if isinstance(table, list) else ()):
                target = route.get("policy") if isinstance(route, dict) else None
                if isinstance(target, str) and target not in policy_names:
                    path = ("routes", adapter, str(index), "policy")
                    self.mismatch(path, target, _one_of("a policy", policy_names, target))


def _with_defaults(layer: _Layer, defaults: _Layer) -> _Layer:
    value = dict(layer.value)
    origin = dict(layer.origin)
    for section in SECTIONS:
        mine, default = value.get(section), defaults.value.get(section)
        if isinstance(mine, dict) and isinstance(default, dict):
            rel = (section,)
            under = _Layer(default, {k: v for k, v in defaults.origin.items() if k[:1] == rel})
            over = _Layer(mine, {k: v for k, v in origin.items() if k[:1] == rel})
            merged = _overlay(under, over, rel)
            value[section] = merged.value
            origin = {k: v for k, v in origin.items() if k[:1] != rel}
            origin.update(merged.origin)
            origin[rel] = layer.origin.get(rel, rel)
    return _Layer(value, origin)


# -- wording ---------------------------------------------------------------------------------

_TYPE_EXPECTED = {
    "dataclass_type": "a mapping",
    "dataclass_exact_type": "a mapping",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "iterable_type": "a list",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "none_required": "null",
}


def _plain(detail: Any) -> str:
    error = detail.get("ctx", {}).get("error")
    return str(error) if error is not None else str(detail.get("msg", "a valid value"))


def _one_of(
    what: str, choices: list[Any], given: Any, *, keys: bool = False, quoted: bool = False
) -> str:
    names = [repr(c) if quoted else str(c) for c in choices]
    if not names:
        text = f"{what} (none defined)" if not keys else "no keys here"
    elif what == "one of" or keys:
        text = f"one of {', '.join(names)}"
    else:
        text = f"{what} ({', '.join(names)})"
    if isinstance(given, str):
        close = difflib.get_close_matches(given, [str(c) for c in choices], n=1, cutoff=0.6)
        if close:
            text += f" (did you mean {close[0]!r}?)"
    return text


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` and ``| None``: the core type and the metadata seen."""
    metadata: list[Any] = []
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            metadata.extend(tp.__metadata__)
            tp = tp.__origin__
            continue
        if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            settings = [a for a in args if is_dataclass(a)]
            if len(args) == 1 or len(settings) == 1:  # settings, or their name
                tp = settings[0] if settings else args[0]
                continue
        return tp, metadata


def _annotation_at(root: Any, loc: tuple[Any, ...]) -> Any:
    tp: Any = root
    for part in loc:
        core, _ = _unwrap(tp)
        if is_dataclass(core) and isinstance(core, type):
            tp = _hints(core).get(str(part))
        elif typing.get_origin(core) is dict:
            tp = typing.get_args(core)[1]
        elif typing.get_origin(core) is tuple:
            tp = typing.get_args(core)[0]
        else:
            return None
        if tp is None:
            return None
    return tp


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _field_names(tp: Any) -> list[str]:
    core, _ = _unwrap(tp)
    if is_dataclass(core) and isinstance(core, type):
        return [f.name for f in fields(core)]
    return []


def _literal_choices(tp: Any) -> list[Any]:
    core, _ = _unwrap(tp)
    if typing.get_origin(core) is typing.Literal:
        return list(typing.get_args(core))
    return []


def _expected(root: Any, loc: tuple[Any, ...]) -> str:
    tp = _annotation_at(root, loc)
    core, metadata = _unwrap(tp)
    for marker in metadata:
        if isinstance(marker, _Scalar):
            return marker.expected
    if is_dataclass(core):
        return "a mapping"
    if core is str:
        return "a string"
    return ""
