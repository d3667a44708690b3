"""Shared fixtures: the fake clock and a runner that drives a policy through
``call`` or ``acall`` so one test body checks both drivers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from resilient.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Runner:
    """Runs a *sync* test callable through ``policy.call`` (flavour "sync") or, wrapped
    in a coroutine function, through ``policy.acall`` on a fresh event loop ("async")."""

    def __init__(self, flavour: str) -> None:
        self.flavour = flavour
        self.is_async = flavour == "async"

    def __call__(self, policy: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if not self.is_async:
            return policy.call(fn, *args, **kwargs)

        async def afn(*a: Any, **kw: Any) -> Any:
            return fn(*a, **kw)

        return asyncio.run(policy.acall(afn, *args, **kwargs))

    def __repr__(self) -> str:
        return f"Runner({self.flavour})"


@pytest.fixture(params=["sync", "async"])
def run(request: pytest.FixtureRequest) -> Runner:
    return Runner(request.param)
