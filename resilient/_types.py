"""Type variables and aliases shared across the package."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeAlias, TypeVar

__all__ = ["AsyncFn", "ExceptionTypes", "P", "SyncFn", "T"]

P = ParamSpec("P")
T = TypeVar("T")

SyncFn: TypeAlias = Callable[..., Any]
AsyncFn: TypeAlias = Callable[..., Awaitable[Any]]
ExceptionTypes: TypeAlias = "type[BaseException] | tuple[type[BaseException], ...]"
