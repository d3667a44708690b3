"""Random documents only ever give a registry or a ``ConfigError``, never another exception."""

from __future__ import annotations

import dataclasses
import json
import math

import yaml
from _config_support import SETTINGS_CLASSES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilient import ConfigError
from resilient.config import (
    Registry,
    load_config,
)
from resilient.config._render import to_json

KEYS = sorted(
    {f.name for cls in SETTINGS_CLASSES for f in dataclasses.fields(cls)}
    | {"version", "backends", "defaults", "bases", "policies", "routes", "$schema", "a", "b"}
)
NAMES = ["a", "b", "c"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "1s",
            "250ms",
            "0",
            "-1s",
            "100/s",
            "5/s;100/min",
            "1e309",
            "nan",
            "inf",
            "${X}",
            "${X:-3}",
            "${",
            "$${X}",
            "OSError",
            "json.JSONDecodeError",
            "json:dumps",
            "no.such.Thing",
            "token_bucket",
            "sliding_window",
            "fixed_window",
            "full",
            "none",
            "decorrelated",
            "memory://",
            "redis://:pw@h/0",
            "retry",
            "timeout",
            "circuit_breaker",
            "attempt_timeout",
            "header:X",
            "client",
            "GET",
            "*",
            *NAMES,
        ]
    ),
    st.text(max_size=8),
)

documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS + NAMES), children, max_size=5),
    ),
    max_leaves=40,
)

policy_like = st.dictionaries(
    st.sampled_from(
        [
            "retry",
            "timeout",
            "circuit_breaker",
            "rate_limit",
            "bulkhead",
            "fallback",
            "extends",
            "order",
            "description",
        ]
    ),
    documents,
    max_size=5,
)
shaped = st.fixed_dictionaries(
    {},
    optional={
        "defaults": policy_like,
        "bases": st.dictionaries(st.sampled_from(NAMES), policy_like, max_size=3),
        "policies": st.dictionaries(st.sampled_from(NAMES), policy_like, max_size=3),
        "backends": st.dictionaries(st.sampled_from(NAMES), documents, max_size=2),
        "routes": st.dictionaries(st.sampled_from(["httpx", "asgi", "grpc"]), documents),
    },
)


def _sometimes_wrong(valid: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(valid, valid, valid, scalars)


durations = _sometimes_wrong(st.one_of(st.floats(0, 100), st.sampled_from(["10ms", "1s", "2m", 0])))
small = _sometimes_wrong(st.integers(0, 6))
plausible_sections = {
    "retry": st.fixed_dictionaries(
        {},
        optional={
            "attempts": small,
            "deadline": durations,
            "max_retry_after": durations,
            "retry_on": _sometimes_wrong(st.sampled_from(["OSError", ["ValueError"]])),
            "budget": _sometimes_wrong(st.just({})),
            "backoff": st.fixed_dictionaries(
                {},
                optional={
                    "initial": durations,
                    "maximum": durations,
                    "multiplier": _sometimes_wrong(st.floats(1, 4)),
                    "jitter": _sometimes_wrong(
                        st.sampled_from(["full", "equal", "decorrelated", "none"])
                    ),
                    "increment": durations,
                },
            ),
        },
    ),
    "timeout": _sometimes_wrong(
        st.fixed_dictionaries({}, optional={"total": durations, "attempt": durations})
    ),
    "circuit_breaker": st.fixed_dictionaries(
        {},
        optional={
            "window": _sometimes_wrong(st.sampled_from([5, "30s", {"size": 3}])),
            "failure_rate": _sometimes_wrong(st.floats(0, 1)),
            "slow_call_duration": durations,
            "minimum_calls": small,
            "open_for": durations,
            "max_open_for": durations,
        },
    ),
    "rate_limit": st.fixed_dictionaries(
        {"rate": _sometimes_wrong(st.sampled_from(["1/s", "5/s;10/min", "3 per minute"]))},
        optional={
            "algorithm": _sometimes_wrong(
                st.sampled_from(["token_bucket", "sliding_window", "fixed_window"])
            ),
            "burst": small,
            "max_wait": durations,
            "backend": _sometimes_wrong(st.sampled_from(NAMES)),
        },
    ),
    "bulkhead": _sometimes_wrong(
        st.fixed_dictionaries(
            {}, optional={"max_concurrent": small, "max_queued": small, "max_wait": durations}
        )
    ),
    "fallback": _sometimes_wrong(st.fixed_dictionaries({}, optional={"value": scalars})),
    "extends": _sometimes_wrong(st.sampled_from(NAMES)),
    "order": _sometimes_wrong(
        st.lists(st.sampled_from(["retry", "timeout", "circuit_breaker", "bulkhead"]), max_size=3)
    ),
}
plausible_policy = st.fixed_dictionaries({}, optional=plausible_sections)
plausible = st.fixed_dictionaries(
    {"policies": st.dictionaries(st.sampled_from(NAMES), plausible_policy, max_size=3)},
    optional={
        "bases": st.dictionaries(st.sampled_from(["x", "y"]), plausible_policy, max_size=2),
        "defaults": st.fixed_dictionaries(
            {}, optional={k: v for k, v in plausible_sections.items() if k in ("retry", "timeout")}
        ),
        "backends": st.dictionaries(
            st.sampled_from(NAMES), st.just({"url": "memory://"}), max_size=2
        ),
    },
)


def _exercise(registry: Registry) -> None:
    registry.describe()
    to_json(registry)
    for name in registry:
        estimate = registry.estimate(name)
        assert estimate.amplification >= 1
        assert not math.isnan(estimate.latency)


def _load(source: object, fmt: str | None = None) -> None:
    try:
        registry = load_config(source, fmt, env={"X": "2"})  # type: ignore[arg-type]
    except ConfigError as exc:
        error = exc
    else:
        _exercise(registry)
        return
    assert error.errors
    for one in error.errors:
        assert str(one)
        assert "\n" not in str(one)  # one line each, for `resilient check`


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.one_of(documents, shaped))
def test_random_mappings(document):
    if isinstance(document, dict):
        _load(document)
    else:
        _load(json.dumps(document), "json")


@FUZZ
@given(plausible)
def test_plausible_documents(document):
    _load(document)


@settings(FUZZ, max_examples=60)
@given(st.one_of(shaped, plausible))
def test_random_yaml_and_json_texts(document):
    _load(yaml.safe_dump(document), "yaml")
    _load(json.dumps(document), "json")


@FUZZ
@given(st.text(max_size=60), st.sampled_from(["yaml", "toml", "json"]))
def test_random_text(text, fmt):
    _load(text, fmt)
