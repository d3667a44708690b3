"""``StructlogListener``: events as structlog key-value records.

structlog is imported when the listener is constructed, never before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._events import CallFailed, CallSucceeded, Event
from ._logging import LoggingListener

__all__ = ["StructlogListener"]

_CALL_EVENTS = (CallSucceeded, CallFailed)


class StructlogListener:
    """Log each event through structlog: the message is the event's ``event_name``
    (``"retry_scheduled"``...), the key-values its flat fields (``policy``, ``kind``,
    ``key``, ``attempt``, ``delay``, ``cause``...).

    Levels are those of :class:`LoggingListener` (``levels=`` overrides them). When
    the bound logger can say a level is disabled (structlog's filtering loggers and
    its stdlib ``BoundLogger`` can), nothing else is done for that event.

    Args:
        logger: a structlog logger (default ``structlog.get_logger("resilient")``).
        levels: overrides of the level per event type.
        call_events: also log every ``CallSucceeded``/``CallFailed`` (DEBUG by
            default); off by default, so successes cost nothing extra.

    Raises:
        ModuleNotFoundError: structlog is not installed.
    """

    __slots__ = ("_levels", "call_events", "logger")

    logs_events = True

    def __init__(
        self,
        logger: Any = None,
        *,
        levels: Mapping[type[Event], int] | None = None,
        call_events: bool = False,
    ) -> None:
        if logger is None:
            try:
                import structlog
            except ModuleNotFoundError as exc:  # pragma: no cover - depends on the env
                exc.add_note("StructlogListener needs structlog: pip install structlog")
                raise
            logger = structlog.get_logger("resilient")
        self.logger: Any = logger
        self._levels = LoggingListener(levels=levels)
        self.call_events = call_events

    def _is_enabled(self, level: int) -> bool:
        logger = self.logger
        check = getattr(logger, "is_enabled_for", None) or getattr(logger, "isEnabledFor", None)
        return True if check is None else bool(check(level))

    def __call__(self, event: Event) -> None:
        if not self.call_events and isinstance(event, _CALL_EVENTS):
            return
        level = self._levels.level_for(event)
        if not self._is_enabled(level):
            return
        fields = event.as_dict()
        name = fields.pop("event")
        self.logger.log(level, name, **fields)

    def __repr__(self) -> str:
        return f"StructlogListener(call_events={self.call_events!r})"
