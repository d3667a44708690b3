"""Fallback: answer with a substitute when a call fails (or is rejected)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

from ._errors import ConfigError
from ._pipeline import PolicyBase
from ._types import P, T
from .observability._emit import Listener

__all__ = ["Fallback"]

_MISSING: Any = object()
FallbackOn: TypeAlias = (
    "type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]"
)


class Fallback(PolicyBase):
    """Return a substitute instead of failing.

    Give exactly one of:

    * ``value``: returned as is;
    * ``handler``: called with the exception (or with the result ``on_result``
      rejected) and its return value used. In ``acall`` it may be ``async``.

    Args:
        on: exception types (default ``Exception``, which includes the library's
            rejections such as :class:`CircuitOpenError`) or a predicate. Other
            exceptions, and cancellation, propagate.
        on_result: a predicate on the result; true means "use the fallback".
        name, listeners: as for every policy.
    """

    kind = "fallback"

    def __init__(
        self,
        value: Any = _MISSING,
        *,
        handler: Callable[[Any], Any] | None = None,
        on: FallbackOn = Exception,
        on_result: Callable[[Any], bool] | None = None,
        name: str | None = None,
        listeners: Sequence[Listener] | None = None,
    ) -> None:
        if (value is _MISSING) == (handler is None):
            raise ConfigError("value/handler", None, "exactly one of value= or handler=")
        if handler is not None and not callable(handler):
            raise ConfigError("handler", handler, "a callable taking the exception or result")
        if isinstance(on, type):
            on = (on,)
        if isinstance(on, tuple):
            if not all(isinstance(t, type) and issubclass(t, BaseException) for t in on):
                raise ConfigError("on", on, "exception types or a predicate")
        elif not callable(on):
            raise ConfigError("on", on, "exception types or a predicate")
        if on_result is not None and not callable(on_result):
            raise ConfigError("on_result", on_result, "a callable(result) -> bool, or None")
        self.value = value
        self.handler = handler
        self.on = on
        self.on_result = on_result
        self._init_base(name, None, listeners)

    def _matches(self, exc: Exception) -> bool:
        on = self.on
        if isinstance(on, tuple):
            return isinstance(exc, on)
        return bool(on(exc))

    def _substitute(self, outcome: object) -> Any:
        if self.handler is None:
            return self.value
        return self.handler(outcome)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the call; on a matching failure return the fallback."""
        if self.handler is not None and inspect.iscoroutinefunction(self.handler):
            raise ConfigError("handler", self.handler, "a sync callable for call() (use acall)")
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            if not self._matches(exc):
                raise
            return self._substitute(exc)  # type: ignore[no-any-return]
        if self.on_result is not None and self.on_result(result):
            return self._substitute(result)  # type: ignore[no-any-return]
        return result

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await the call; on a matching failure return (or await) the fallback."""
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            if not self._matches(exc):
                raise
            substitute = self._substitute(exc)
        else:
            if self.on_result is None or not self.on_result(result):
                return result
            substitute = self._substitute(result)
        if inspect.isawaitable(substitute):
            return await substitute  # type: ignore[no-any-return]
        return substitute  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"Fallback(name={self.name!r})"
