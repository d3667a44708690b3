"""``SharedCircuitBreaker``: one circuit breaker for a whole fleet, kept in Redis.

``CircuitBreaker(name="payments", store=store)`` with a :class:`RedisStore`, an
:class:`AsyncRedisStore` or a ``redis://`` URL builds one of these; so does
``SharedCircuitBreaker(...)`` itself, which also takes ``flush_interval`` and
``on_backend_error``. Every process that uses the same name (and key prefix)
shares the breaker's state and window. It is a :class:`~resilient.CircuitBreaker`
(same arguments, events, stats and rules), with these guarantees:

* **Atomic transitions, no last writer wins.** The state, generation, open
  period, probe permits and the window live in one Redis hash
  (``<prefix>:{<name>}:breaker``); every step is one ``EVALSHA`` of
  ``lua/breaker.lua``, which applies the in-memory breaker's rules to the stored
  state and writes the result back atomically. Each change of state starts a new
  generation; outcomes carry the generation that admitted them and probe
  verdicts their permit, and both are ignored once that generation has ended.
  Two replicas racing to open and to close a breaker cannot overwrite each
  other: the first step decides, the second is answered with its result.
* **Exactly ``half_open_calls`` probes, fleet-wide.** Permits are handed out by
  the script; one not reported within ``half_open_max_wait`` (its replica died,
  hung or lost Redis) counts as a failed, slow probe, so HALF_OPEN never wedges.
* **No round trip per call while CLOSED.** A replica counts its calls' outcomes
  locally and sends them in one step, together with the decision that needs it,
  at most every ``flush_interval`` (default 1 s) while it is being called; the
  answer carries the shared state. A failure that could trip the breaker (by the
  counts last seen plus this replica's) or that carries a ``retry_after`` hint is
  sent at once. An OPEN breaker rejects from the view until its period ends.
* **Bounded staleness.** A replica decides from its view for at most
  ``flush_interval`` after Redis last answered it (and never past the end of an
  open period): a change made anywhere in the fleet is seen by every replica
  within ``flush_interval`` (plus one round trip), by its first call after that.
  ``flush_interval=0`` asks Redis for every admission and sends every outcome as
  it is recorded (two round trips per call: the in-memory breaker's decisions,
  exactly, for a whole fleet).

Round trips: none for a call admitted or rejected from the view; otherwise one
per decision (a refresh, a probe permit, a probe's verdict, a change by hand).
Outcomes sent in a step that failed are dropped, never sent twice.

**When Redis fails** (see ``on_backend_error``, default: the store's), a call
that needs Redis, and every call once the view is older than ``flush_interval``,
gets: ``"raise"``: :class:`~resilient.BackendError`; ``"allow"``: admitted and
not recorded; ``"deny"``: :class:`~resilient.CircuitOpenError` with reason
``"backend_unavailable"`` and ``retry_after`` = when Redis is tried again;
``"local"``: an in-memory breaker decides, starting where the shared one was
last seen (an open breaker stays open for the rest of its period), until Redis
answers again. Redis is not called for the store's ``probe_interval`` after a
failure. Recording an outcome never raises; changes by hand (``reset()``...)
raise :class:`~resilient.BackendError` when Redis fails, whatever the mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ..._circuit_breaker import (
    CLOSED,
    DISABLED,
    FORCED_OPEN,
    IGNORED,
    CircuitBreaker,
    CircuitBreakerStats,
    CircuitState,
)
from ..._duration import Duration, to_seconds
from ..._errors import ConfigError
from ..._types import P, T
from ..._windows import FAILURE, SLOW
from ...observability._events import CallFailed, CallSucceeded
from .._health import OnBackendError, check_mode
from ._async.breaker import AsyncBreakerLink
from ._async.store import AsyncRedisStore
from ._breaker_core import PASS, REJECT, Admission, Changes, SharedBreakerCore
from ._core import StoreCore
from ._sync.breaker import BreakerLink

__all__ = ["DEFAULT_FLUSH_INTERVAL", "SharedCircuitBreaker"]

DEFAULT_FLUSH_INTERVAL = 1.0
"""Seconds a replica decides from its view of the shared breaker before asking again."""


class SharedCircuitBreaker(CircuitBreaker):
    """A :class:`~resilient.CircuitBreaker` whose state all replicas share through Redis.

    See the module docs for what is shared and when. The arguments are
    :class:`~resilient.CircuitBreaker`'s, plus:

    Args:
        name: required: every process using the same name (and key prefix) shares
            the breaker.
        store: a ``RedisStore`` (sync and async calls), an ``AsyncRedisStore``
            (``acall`` only) or a ``redis://``, ``rediss://`` or
            ``redis+cluster://`` URL (a ``RedisStore`` made for this breaker and
            closed by :meth:`close`). Its key prefix, timeouts, probe interval and
            clock apply.
        flush_interval: the longest time this replica decides from its view of the
            shared state (default 1 s; ``0``: ask Redis for every call).
        on_backend_error: ``"raise"``, ``"allow"``, ``"deny"`` or ``"local"``
            (default: the store's ``on_backend_error``).
        clock: as for every policy; defaults to the store's clock when it has one.
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        store: StoreCore | str,
        flush_interval: Duration = DEFAULT_FLUSH_INTERVAL,
        on_backend_error: OnBackendError | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(store, StoreCore | str):
            raise ConfigError("store", store, "a RedisStore, an AsyncRedisStore or a Redis URL")
        if not isinstance(name, str) or not name:
            raise ConfigError(
                "name", name, "a name: every replica using the same name shares the breaker"
            )
        owned: StoreCore | None = None
        if isinstance(store, str):
            from ._sync.store import RedisStore

            owned = store = RedisStore(store)
        shared = store._shared
        if options.get("clock") is None and shared.clock is not None:
            options["clock"] = shared.clock
        super().__init__(name=name, **options)
        interval = to_seconds(flush_interval, name="flush_interval")
        mode = store.on_backend_error if on_backend_error is None else check_mode(on_backend_error)
        self.store = store
        self._owned = owned
        self._remote = SharedBreakerCore(
            self.config,
            name,
            shared,
            mode,
            self._core.now,
            self._core,
            interval,
            shared.clock is not None and shared.clock is self.clock,
        )
        self._async_only = isinstance(store, AsyncRedisStore)
        self._link: BreakerLink | None = None
        self._alink: AsyncBreakerLink | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        shared.health.watch(self._emitter, name, self.kind, self.clock, mode)

    @property
    def flush_interval(self) -> float:
        """The longest this replica decides from its view of the shared state (seconds)."""
        return self._remote.flush_interval

    @property
    def on_backend_error(self) -> OnBackendError:
        """What a call gets when Redis fails (see the module docs)."""
        return self._remote.mode

    @property
    def key(self) -> str:
        """The Redis key of the breaker's hash."""
        return self._remote.key

    @property
    def backend(self) -> str:
        """The redacted URL (or client description) of the Redis behind the breaker."""
        return self._remote.shared.backend

    # -- the links (made on first use: a store's clients connect lazily) ---------------------

    def _sync(self) -> BreakerLink:
        link = self._link
        if link is None:
            if self._async_only:
                msg = f"{self.name!r}: its store has only async methods; use acall()"
                raise TypeError(msg)
            link = self._link = BreakerLink(self._remote)
        return link

    def _async(self) -> AsyncBreakerLink:
        link = self._alink
        if link is None:
            link = self._alink = AsyncBreakerLink(self._remote)
        return link

    # -- state and manual control ------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The state as this replica sees it (no round trip; see :meth:`flush`)."""
        state, changes = self._remote.current()
        if changes:
            self._emit_changes(changes)
        return state

    def stats(self) -> CircuitBreakerStats:
        """The fleet's counts as of Redis's last answer, and this replica's rejections
        (no round trip: :meth:`flush` refreshes them)."""
        stats, changes = self._remote.snapshot()
        if changes:
            self._emit_changes(changes)
        return stats

    def flush(self) -> CircuitBreakerStats:
        """Send the outcomes counted here and refresh the view: one round trip.

        Raises:
            BackendError: Redis failed.
        """
        self._emit(self._sync().command("read"))
        return self.stats()

    async def aflush(self) -> CircuitBreakerStats:
        """Async :meth:`flush`."""
        self._emit(await self._async().command("read"))
        return self.stats()

    def _set(self, state: CircuitState, why: str) -> None:
        self._emit(self._remote.local_set(state, why))
        self._emit(self._sync().command("set", state, why))

    async def _aset(self, state: CircuitState, why: str) -> None:
        self._emit(self._remote.local_set(state, why))
        self._emit(await self._async().command("set", state, why))

    def reset(self) -> None:
        """CLOSED with an empty window, fleet-wide (one round trip).

        Raises:
            BackendError: Redis failed (the in-memory stand-in is reset all the same).
        """
        self._set(CLOSED, "reset()")

    def force_open(self) -> None:
        """Reject every call fleet-wide until :meth:`reset` (one round trip)."""
        self._set(FORCED_OPEN, "force_open()")

    def disable(self) -> None:
        """Let every call through fleet-wide, unrecorded, until :meth:`reset`."""
        self._set(DISABLED, "disable()")

    async def areset(self) -> None:
        """Async :meth:`reset`."""
        await self._aset(CLOSED, "reset()")

    async def aforce_open(self) -> None:
        """Async :meth:`force_open`."""
        await self._aset(FORCED_OPEN, "force_open()")

    async def adisable(self) -> None:
        """Async :meth:`disable`."""
        await self._aset(DISABLED, "disable()")

    def close(self) -> None:
        """Send the outcomes counted here (best effort) and close the connections the
        breaker opened (not those of a store given to it)."""
        if self._link is not None or not self._async_only:
            self._emit(self._sync().flush())
        if self._owned is not None:
            self._owned.close()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        """Async :meth:`close` (closes the running event loop's connection, if made here)."""
        self._emit(await self._async().flush())
        if self._owned is not None:
            await self._owned.aclose()  # type: ignore[attr-defined]

    # -- driver helpers -------------------------------------------------------------------------

    def _emit(self, changes: Changes) -> None:
        if changes:
            self._emit_changes(changes)

    def _settle(self, admission: Admission) -> Any:
        """The ticket of an admission, or the rejection raised (or, observe-only, passed)."""
        ticket, retry_after, reason, changes = admission
        if changes:
            self._emit_changes(changes)
        if type(ticket) is not int or ticket != REJECT:
            return ticket
        self._reject(self._remote.now(), reason, retry_after, self.config.observe_only)
        return PASS

    def _classify(self, start: float, exc: Exception) -> tuple[int, float | None, float]:
        """``(outcome, hint, end)`` of a call that raised *exc* (outcome ``IGNORED``: none)."""
        end = self._remote.now()
        cfg = self.config
        verdict = cfg.classify(exc)
        if verdict == IGNORED:
            return IGNORED, None, end
        hint = cfg.hinted_open(exc) if verdict == FAILURE else None
        return verdict | (SLOW if end - start > cfg.slow_call_duration else 0), hint, end

    def _judge(self, start: float, end: float, result: object) -> tuple[int, float | None]:
        """``(outcome, hint)`` of a call that returned *result*."""
        cfg = self.config
        outcome = SLOW if end - start > cfg.slow_call_duration else 0
        hint = None
        if cfg.record_result is not None and cfg.record_result(result):
            outcome |= FAILURE
            hint = cfg.hinted_open(result)
        return outcome, hint

    def _report(self, outcome: int, start: float, end: float, exc: Exception | None) -> None:
        if not self._emitter.listening:
            return
        event: CallSucceeded | CallFailed
        if exc is not None:
            event = CallFailed(
                policy=self.name, kind=self.kind, at=end, duration=end - start, exception=exc
            )
        elif outcome & FAILURE:
            event = CallFailed(policy=self.name, kind=self.kind, at=end, duration=end - start)
        else:
            event = CallSucceeded(policy=self.name, kind=self.kind, at=end, duration=end - start)
        self._emitter.emit(event)

    # -- the drivers ---------------------------------------------------------------------------
    #
    # The hot path, as in the in-memory breaker: an admission the view decides reads two
    # attributes (no lock), and a plain success in a count window bumps a lock-free
    # counter of the current generation; everything else goes through the helpers.

    def _admit(self, start: float) -> Any:  # type: ignore[override]
        core = self._remote
        if start < core.gate:
            return self._settle(core.reject_open(start))
        return self._settle(self._sync().admit(start))

    async def _aadmit(self, start: float) -> Any:
        core = self._remote
        if start < core.gate:
            return self._settle(core.reject_open(start))
        return self._settle(await self._async().admit(start))

    def _ok(self, ticket: Any, start: float, end: float, result: object) -> None:
        """A call that returned: count it (the helpers' path)."""
        core = self._remote
        if type(ticket) is int and not self._judge_results and not self._emitter.listening:
            if core.note(ticket, SLOW if end - start > core.slow_after else 0, end, None):
                self._emit(self._sync().flush())
            return
        self._succeeded_at(ticket, start, end, result)

    async def _aok(self, ticket: Any, start: float, end: float, result: object) -> None:
        core = self._remote
        if type(ticket) is int and not self._judge_results and not self._emitter.listening:
            if core.note(ticket, SLOW if end - start > core.slow_after else 0, end, None):
                self._emit(await self._async().flush())
            return
        await self._asucceeded_at(ticket, start, end, result)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` if the breaker admits it, and record the outcome."""
        core = self._remote
        now = core.now
        start = now()
        if start < core.fast_until and self._link is not None:
            ticket: Any = core.fast
        else:
            ticket = self._admit(start)
            start = now()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self._failed(ticket, start, exc)
            raise
        except BaseException:
            self._sync().release(ticket)
            raise
        end = now()
        oks = core.oks
        if (
            oks is not None
            and ticket == core.pending_gen
            and end - start <= core.slow_after
            and not self._judge_results
            and not self._emitter.listening
        ):
            oks.add()
        else:
            self._ok(ticket, start, end, result)
        return result

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` if the breaker admits it, and record the outcome."""
        core = self._remote
        now = core.now
        start = now()
        if start < core.fast_until:
            ticket: Any = core.fast
        else:
            ticket = await self._aadmit(start)
            start = now()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            await self._afailed(ticket, start, exc)
            raise
        except BaseException:
            self._release_later(ticket)
            raise
        end = now()
        oks = core.oks
        if (
            oks is not None
            and ticket == core.pending_gen
            and end - start <= core.slow_after
            and not self._judge_results
            and not self._emitter.listening
        ):
            oks.add()
        else:
            await self._aok(ticket, start, end, result)
        return result

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        core, now, admit, ok, failed = (
            self._remote,
            self._remote.now,
            self._admit,
            self._ok,
            self._failed,
        )
        judge, emitter, release = self._judge_results, self._emitter, self._release_sync

        def guarded(*args: Any, **kwargs: Any) -> Any:
            start = now()
            if start < core.fast_until and self._link is not None:
                ticket: Any = core.fast
            else:
                ticket = admit(start)
                start = now()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                failed(ticket, start, exc)
                raise
            except BaseException:
                release(ticket)
                raise
            end = now()
            oks = core.oks
            if (
                oks is not None
                and ticket == core.pending_gen
                and end - start <= core.slow_after
                and not judge
                and not emitter.listening
            ):
                oks.add()
            else:
                ok(ticket, start, end, result)
            return result

        return guarded

    def _awrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        core, now, admit, ok, failed = (
            self._remote,
            self._remote.now,
            self._aadmit,
            self._aok,
            self._afailed,
        )
        judge, emitter, release = self._judge_results, self._emitter, self._release_later

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            start = now()
            if start < core.fast_until:
                ticket: Any = core.fast
            else:
                ticket = await admit(start)
                start = now()
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                await failed(ticket, start, exc)
                raise
            except BaseException:
                release(ticket)
                raise
            end = now()
            oks = core.oks
            if (
                oks is not None
                and ticket == core.pending_gen
                and end - start <= core.slow_after
                and not judge
                and not emitter.listening
            ):
                oks.add()
            else:
                await ok(ticket, start, end, result)
            return result

        return guarded

    # -- the helpers (never on the hot path) ----------------------------------------------------

    def _release_sync(self, ticket: Any) -> None:
        self._sync().release(ticket)

    def _failed(self, ticket: Any, start: float, exc: Exception) -> None:
        link = self._sync()
        try:
            outcome, hint, end = self._classify(start, exc)
        except BaseException:
            link.release(ticket)
            raise
        if outcome == IGNORED:
            link.release(ticket)
        else:
            self._emit(link.record(ticket, outcome, end, hint))
        self._report(FAILURE, start, end, exc)

    def _succeeded_at(self, ticket: Any, start: float, end: float, result: object) -> None:
        link = self._sync()
        try:
            outcome, hint = self._judge(start, end, result)
        except BaseException:
            link.release(ticket)
            raise
        self._emit(link.record(ticket, outcome, end, hint))
        self._report(outcome, start, end, None)

    async def _afailed(self, ticket: Any, start: float, exc: Exception) -> None:
        link = self._async()
        try:
            outcome, hint, end = self._classify(start, exc)
        except BaseException:
            self._release_later(ticket)
            raise
        if outcome == IGNORED:
            await link.release(ticket)
        else:
            self._emit(await link.record(ticket, outcome, end, hint))
        self._report(FAILURE, start, end, exc)

    async def _asucceeded_at(self, ticket: Any, start: float, end: float, result: object) -> None:
        link = self._async()
        try:
            outcome, hint = self._judge(start, end, result)
        except BaseException:
            self._release_later(ticket)
            raise
        self._emit(await link.record(ticket, outcome, end, hint))
        self._report(outcome, start, end, None)

    def _release_later(self, ticket: Any) -> None:
        """Give a cancelled probe's permit back from a task of its own: the cancelled
        task may not be able to await anything any more."""
        if type(ticket) is int:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - acall always runs on a loop
            return
        task = loop.create_task(self._arelease(ticket))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _arelease(self, ticket: Any) -> None:
        await self._async().release(ticket)

    def __repr__(self) -> str:
        return (
            f"SharedCircuitBreaker(name={self.name!r}, state={self._remote.view.value!r}, "
            f"backend={self.backend!r})"
        )
