"""The ``Policy`` protocol, the shared policy base (decorator support) and ``Pipeline``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, ClassVar, Protocol, overload, runtime_checkable

from ._clock import SYSTEM_CLOCK, Clock
from ._errors import ConfigError
from ._types import P, T
from .observability._emit import Emitter, Listener

__all__ = ["Pipeline", "Policy", "PolicyBase"]


@runtime_checkable
class Policy(Protocol):
    """Anything with ``call`` and ``acall`` is a policy; no base class is needed."""

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` under the policy."""
        ...

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` under the policy."""
        ...


class PolicyBase:
    """Shared plumbing of resilient's policies: ``name``, ``clock``, listeners, decorator.

    Subclasses implement ``call`` and ``acall``. Using an instance as a decorator
    wraps a ``def`` with ``call`` and an ``async def`` with ``acall``; the wrapped
    function keeps its signature for type checkers.
    """

    kind: ClassVar[str] = "policy"
    name: str
    clock: Clock
    _emitter: Emitter

    def _init_base(
        self, name: str | None, clock: Clock | None, listeners: Sequence[Listener] | None
    ) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError("name", name, "a non-empty string")
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigError("clock", clock, "an object with monotonic(), sleep() and asleep()")
        self.name = name or self.kind
        self.clock = clock or SYSTEM_CLOCK
        self._emitter = Emitter(listeners)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        raise NotImplementedError  # pragma: no cover

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        raise NotImplementedError  # pragma: no cover

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any], /) -> Callable[P, Any]:
        return decorate(self, fn)

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any] | None:
        """A policy may return a specialised sync wrapper (a faster decorator); None: default."""
        return None

    def _awrap(self, fn: Callable[..., Any]) -> Callable[..., Any] | None:
        """A policy may return a specialised async wrapper; None: default."""
        return None


def decorate(policy: Policy, fn: Callable[P, Any]) -> Callable[P, Any]:
    """Wrap *fn* so each call runs under *policy* (``acall`` for ``async def``)."""
    if not callable(fn):
        raise ConfigError("fn", fn, "a function or other callable to decorate")
    is_async = inspect.iscoroutinefunction(fn)
    if isinstance(policy, PolicyBase):
        special = policy._awrap(fn) if is_async else policy._wrap(fn)
        if special is not None:
            return functools.wraps(fn)(special)
    if is_async:

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await policy.acall(fn, *args, **kwargs)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        return policy.call(fn, *args, **kwargs)

    return wrapper


def _flatten(policies: Sequence[Policy]) -> list[Policy]:
    out: list[Policy] = []
    for policy in policies:
        if isinstance(policy, Pipeline):
            out.extend(_flatten(policy.policies))
        else:
            out.append(policy)
    return out


class Pipeline(PolicyBase):
    """Several policies applied as one, **outermost first**.

    ``Pipeline(rate_limit, total_timeout, retry, breaker, attempt_timeout)``
    means the rate limiter wraps everything, the retry wraps the breaker, and
    the attempt timeout wraps each single try. Pipelines nest.

    ``listeners=`` are added to every policy inside (nested pipelines included),
    so they hear each policy's events.
    """

    kind = "pipeline"

    def __init__(
        self,
        *policies: Policy,
        name: str | None = None,
        listeners: Sequence[Listener] | None = None,
    ) -> None:
        for index, policy in enumerate(policies):
            if not isinstance(policy, Policy):
                raise ConfigError(
                    f"Pipeline(policies[{index}])", policy, "a policy with call() and acall()"
                )
        self._init_base(name, None, listeners)
        self.policies: tuple[Policy, ...] = policies
        if listeners:
            for policy in _flatten(policies):
                emitter = getattr(policy, "_emitter", None)
                if isinstance(emitter, Emitter):
                    emitter.add_local(self._emitter.local)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        policies = self.policies
        last = len(policies)

        def step(index: int) -> T:
            if index == last:
                return fn(*args, **kwargs)
            return policies[index].call(step, index + 1)

        return step(0)

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        policies = self.policies
        last = len(policies)

        async def step(index: int) -> T:
            if index == last:
                return await fn(*args, **kwargs)
            return await policies[index].acall(step, index + 1)

        return await step(0)

    def __iter__(self) -> Any:
        return iter(self.policies)

    def __len__(self) -> int:
        return len(self.policies)

    def __repr__(self) -> str:
        inner = ", ".join(repr(p) for p in self.policies)
        return f"Pipeline({inner}, name={self.name!r})"
