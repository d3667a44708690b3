# GENERATED from _async/breaker.py by scripts/unasync.py -- do not edit.
"""The I/O of a circuit breaker shared through Redis: every step is one script run.

:class:`BreakerLink` asks :class:`~.._breaker_core.SharedBreakerCore` what to
send, runs ``lua/breaker.lua`` once and hands the answer (or the failure) back.
The link in ``_async/`` is written by hand and the one in ``_sync/`` generated
from it by ``scripts/unasync.py``: edit ``_async/``.
"""

from __future__ import annotations

from typing import Any

from ...._circuit_breaker import CircuitState
from .._breaker_core import SCRIPT, Admission, Changes, LocalTicket, Probe, SharedBreakerCore
from .._connection import Clients

__all__ = ["BreakerLink"]


class BreakerLink:
    """One shared breaker's steps on a Redis client (see ``_breaker.py``)."""

    __slots__ = ("_clients", "core")

    def __init__(self, core: SharedBreakerCore) -> None:
        self.core = core
        self._clients = core.shared.clients_for(Clients)

    def _run(self, args: list[Any]) -> Any:
        return self._clients.runner().run(SCRIPT, self.core.keys, args)

    def admit(self, now: float) -> Admission:
        """Admit a call the view cannot decide: one round trip, or none while Redis is
        down (then ``on_backend_error`` decides)."""
        core = self.core
        decided, args = core.plan_admit(now)
        if decided is not None:
            return decided
        if args is None:
            return core.fallback(now, None)
        try:
            reply = self._run(args)
            made = core.admitted(reply)
        except Exception as exc:
            return core.fallback(now, exc)
        return made

    def record(self, ticket: object, outcome: int, end: float, hint: float | None) -> Changes:
        """Count the outcome of the call holding *ticket* (never raises for Redis)."""
        core = self.core
        if type(ticket) is int:
            if core.note(ticket, outcome, end, hint):
                return self._step(core.flush_request(hint))
            return None
        if type(ticket) is Probe:
            return self._step(core.report_request(ticket, outcome, hint))
        if type(ticket) is LocalTicket:
            return core.local_record(ticket, outcome, end, hint)
        return None

    def release(self, ticket: object) -> None:
        """The call holding *ticket* ended without a verdict: give a probe's permit back."""
        if type(ticket) is Probe:
            self._step(self.core.release_request(ticket))
        elif type(ticket) is LocalTicket:
            self.core.local.release(ticket.ticket)

    def flush(self) -> Changes:
        """Send the outcomes counted here, if any (best effort)."""
        return self._step(self.core.flush_request())

    def _step(self, args: list[Any] | None) -> Changes:
        """A best-effort step: a failure marks Redis down and is not raised."""
        if args is None:
            return None
        core = self.core
        try:
            reply = self._run(args)
            return core.absorb(reply)
        except Exception as exc:
            core.lost(exc)
            return None

    def command(self, op: str, state: CircuitState | None = None, why: str = "") -> Changes:
        """A step asked for by hand (``set`` or ``read``), tried even while Redis is down.

        Raises:
            BackendError: Redis failed (whatever ``on_backend_error`` says).
        """
        core = self.core
        try:
            reply = self._run(core.command_request(op, state, why))
            return core.absorb(reply)
        except Exception as exc:
            raise core.error(exc, op) from exc
