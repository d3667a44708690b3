"""The part of the shared circuit breaker that does no I/O (see ``_breaker.py``).

:class:`SharedBreakerCore` keeps this replica's view of the breaker (its state,
generation, open period and the fleet's counts as of the last answer from
Redis), the outcomes counted here and not sent yet, and the in-memory breaker
that stands in while Redis is down (``on_backend_error="local"``). It turns
each step into the arguments of one ``lua/breaker.lua`` run and each answer
back into a decision and the state changes to report. The I/O lives in
``_async/breaker.py`` (written by hand) and ``_sync/breaker.py`` (generated).

Tickets (what an admitted call holds until it reports):

* an ``int`` >= 0: the generation of a CLOSED breaker; the outcome is counted here
  and sent with a later step, unless the generation has changed by then;
* :data:`PASS` (-1): nothing to record (DISABLED, ``"allow"`` during an outage,
  an observe-only pass);
* :class:`Probe`: a HALF_OPEN permit handed out by Redis; its verdict is one step;
* :class:`LocalTicket`: a ticket of the in-memory stand-in.
"""

from __future__ import annotations

import math
import struct
import threading
from typing import Any, Final, TypeAlias

from ..._circuit_breaker import (
    _LOCK_FREE,
    CLOSED,
    DISABLED,
    FORCED_OPEN,
    HALF_OPEN,
    OPEN,
    CircuitBreakerConfig,
    CircuitBreakerStats,
    CircuitState,
    _BreakerCore,
    _Change,
    _Counter,
    retry_after_until,
)
from ..._errors import BackendError
from ..._windows import FAILURE, SLOW, CountWindow
from .._health import OnBackendError
from ._core import Shared
from ._errors import backend_error, is_outage
from ._keys import tagged
from ._scripts import lua_script

__all__ = [
    "PASS",
    "REJECT",
    "SCRIPT",
    "Admission",
    "Changes",
    "LocalTicket",
    "Probe",
    "SharedBreakerCore",
]

SCRIPT: Final = lua_script("breaker.lua")

PASS: Final = -1
"""The ticket of a call whose outcome is not recorded."""
REJECT: Final = -2
"""The ticket of a refused call."""
_NO_GENERATION: Final = -3
_NEVER: Final = -math.inf
_MIN_RETRY: Final = 1e-3
IDLE_TTL: Final = 86_400.0
"""Seconds a breaker's hash outlives its last change (plus an open period still
running); a breaker forced open or disabled by hand never expires."""

Changes: TypeAlias = "list[_Change] | None"
Admission: TypeAlias = "tuple[Any, float | None, str, list[_Change] | None]"
"""``(ticket, retry_after, reason, changes)``: ticket :data:`REJECT` refuses the call."""


class Probe:
    """A HALF_OPEN permit handed out by Redis (its number in the breaker's ``seq``)."""

    __slots__ = ("permit",)

    def __init__(self, permit: int) -> None:
        self.permit = permit

    def __repr__(self) -> str:
        return f"Probe({self.permit})"


class LocalTicket:
    """A ticket of the in-memory stand-in (``on_backend_error="local"``)."""

    __slots__ = ("ticket",)

    def __init__(self, ticket: int) -> None:
        self.ticket = ticket


class BadReplyError(Exception):
    """Redis answered the breaker script with something it cannot have sent."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _settings(config: CircuitBreakerConfig, idle_ttl: float) -> bytes:
    """ARGV[3] of every script run: the config as 13 little-endian doubles."""
    window = config.window
    if isinstance(window, CountWindow):
        shape = (0.0, window.size, 0.0)
        horizon = 0.0
    else:
        shape = (1.0, window.buckets, window.width)
        horizon = window.seconds
    return struct.pack(
        "<13d",
        *shape,
        config.effective_minimum_calls,
        config.failure_rate,
        config.slow_call_rate,
        config.consecutive_failures or 0,
        config.half_open_calls,
        config.open_for,
        config.open_for_multiplier,
        math.inf if config.max_open_for is None else config.max_open_for,
        config.half_open_max_wait,
        math.ceil((idle_ttl + horizon) * 1000),
    )


class SharedBreakerCore:
    """This replica's side of a shared breaker (see the module docstring).

    Thread-safe: ``lock`` guards the view and the pending outcomes, is held only
    for a few assignments, and never across I/O.
    """

    __slots__ = (
        "buckets",
        "calls",
        "clean",
        "config",
        "count_window",
        "failures",
        "fast",
        "fast_until",
        "flush_interval",
        "folded",
        "fresh_until",
        "full",
        "gate",
        "generation",
        "health",
        "inflight",
        "key",
        "keys",
        "local",
        "local_active",
        "lock",
        "mode",
        "now",
        "oks",
        "open_until",
        "outcomes",
        "pcalls",
        "pending_gen",
        "per_call",
        "pfailures",
        "pslow",
        "rejected",
        "same_base",
        "server_clock",
        "settings",
        "shared",
        "since",
        "size",
        "slow",
        "slow_after",
        "state",
        "streak",
        "trailing",
        "view",
        "why",
        "width",
    )

    def __init__(
        self,
        config: CircuitBreakerConfig,
        name: str,
        shared: Shared,
        mode: OnBackendError,
        now: Any,
        local: _BreakerCore,
        flush_interval: float,
        same_base: bool,
    ) -> None:
        self.config = config
        self.shared = shared
        self.health = shared.health
        self.mode: OnBackendError = mode
        self.now = now
        self.local = local
        self.slow_after = config.slow_call_duration
        self.flush_interval = flush_interval
        self.per_call = flush_interval == 0
        self.server_clock = shared.clock
        self.same_base = same_base
        self.key = tagged(shared.prefix, name) + ":breaker"
        self.keys = [self.key]
        window = config.window
        self.count_window = isinstance(window, CountWindow)
        self.size = window.size if isinstance(window, CountWindow) else window.buckets
        self.width = 0.0 if isinstance(window, CountWindow) else window.width
        self.settings = _settings(config, IDLE_TTL)
        self.lock = threading.Lock()
        # The view: what Redis said last (times on this replica's clock).
        self.view = CLOSED  # the state last reported to listeners (shared or local)
        self.state = CLOSED
        self.generation = -1
        self.since = now()
        self.why = ""
        self.open_until = _NEVER
        self.fresh_until = _NEVER  # the view decides admissions until then
        self.fast: int = PASS  # the ticket of a cached admission (CLOSED: the generation)
        self.fast_until = _NEVER  # fresh_until while CLOSED or DISABLED, else -inf
        self.gate = _NEVER  # fresh_until while OPEN (the view rejects until then), else -inf
        self.full = False  # HALF_OPEN and every permit handed out
        self.calls = self.failures = self.slow = self.streak = self.inflight = 0
        self.local_active = False  # the in-memory stand-in decides
        self.rejected = _Counter()
        # Outcomes of CLOSED calls, not sent yet, all of generation pending_gen.
        self.pending_gen = _NO_GENERATION
        self.outcomes = bytearray()  # count window: one byte of flags per call
        self.buckets: dict[int, list[int]] = {}  # time window: bucket -> [calls, failed, slow]
        self.trailing = 0  # failures at the end of the pending outcomes
        self.clean = False  # a pending outcome was not a failure
        self.pcalls = self.pfailures = self.pslow = 0
        # Plain successes counted without the lock (count windows, batched mode): folded
        # into the outcomes, in order, by whoever takes the lock to count or send.
        self.oks: _Counter | None = None
        self.folded = 0

    # -- outcomes counted here ----------------------------------------------------------

    def note(self, ticket: int, outcome: int, end: float, hint: float | None) -> bool:
        """Count the outcome of a CLOSED call (its *ticket* is the generation that
        admitted it); whether to send the pending outcomes now."""
        with self.lock:
            if ticket != self.pending_gen:
                return False  # admitted by a generation that is gone
            if self.oks is not None:
                self._fold()
            if self.count_window:
                outcomes = self.outcomes
                outcomes.append(outcome)
                if len(outcomes) > 2 * self.size:
                    del outcomes[: -self.size]  # older ones would leave the window anyway
            else:
                self._bucket(outcome, end)
            self.pcalls += 1
            if outcome & FAILURE:
                self.pfailures += 1
                self.trailing += 1
            else:
                self.trailing = 0
                self.clean = True
            if outcome & SLOW:
                self.pslow += 1
            if self.per_call or hint is not None:
                return True
            return bool(outcome) and self._would_trip()

    def _fold(self) -> None:
        """Move the lock-free successes into the pending outcomes (under the lock)."""
        oks = self.oks
        assert oks is not None
        total = oks.value()
        count = total - self.folded
        if count:
            self.folded = total
            outcomes = self.outcomes
            if count >= self.size:
                self.outcomes = bytearray(self.size)
            else:
                outcomes.extend(bytes(count))
                if len(outcomes) > 2 * self.size:
                    del outcomes[: -self.size]
            self.pcalls += count
            self.trailing = 0
            self.clean = True

    def _bucket(self, outcome: int, end: float) -> None:
        index = math.floor(end / self.width)
        counts = self.buckets.get(index)
        if counts is None:
            buckets = self.buckets
            if len(buckets) >= self.size:  # outcomes too old for the window: drop them
                newest = max(index, *buckets)
                for old in [i for i in buckets if i <= newest - self.size]:
                    del buckets[old]
            counts = buckets[index] = [0, 0, 0]
        counts[0] += 1
        if outcome & FAILURE:
            counts[1] += 1
        if outcome & SLOW:
            counts[2] += 1

    def _would_trip(self) -> bool:
        """Whether the fleet's counts (as last seen) plus the pending ones may trip the
        breaker: then they are sent at once instead of waiting for the next refresh."""
        calls = self.calls + self.pcalls
        if self.count_window:
            calls = min(calls, self.size)
        failures = min(calls, self.failures + self.pfailures)
        slow = min(calls, self.slow + self.pslow)
        streak = self.trailing if self.clean else self.streak + self.trailing
        return self.config.trip_reason(calls, failures, slow, streak) is not None

    def _take(self, now: float) -> tuple[str, bytes | str, int, str]:
        """The pending outcomes as script arguments (generation, outcomes, streak, clean),
        forgetting them."""
        if self.oks is not None:
            self._fold()
        if not self.pcalls:
            return "-", b"", 0, "0"
        if self.count_window:
            batch: bytes | str = bytes(self.outcomes[-self.size :])
            self.outcomes = bytearray()
        else:
            current = math.floor(now / self.width)
            batch = ";".join(
                f"{max(current - index, 0)} {c} {f} {s}"
                for index, (c, f, s) in sorted(self.buckets.items())
            )
            self.buckets = {}
        taken = (str(self.pending_gen), batch, self.trailing, "1" if self.clean else "0")
        self.trailing = self.pcalls = self.pfailures = self.pslow = 0
        self.clean = False
        return taken

    def _drop_pending(self, generation: int) -> None:
        # The lock-free path reads `oks` before `pending_gen`: publish the generation
        # first, then its counter (a success racing the change may be lost, never
        # counted for the wrong generation).
        self.pending_gen = generation
        lock_free = _LOCK_FREE and self.count_window and not self.per_call and generation >= 0
        self.oks = _Counter() if lock_free else None
        self.folded = 0
        self.outcomes = bytearray()
        self.buckets = {}
        self.trailing = self.pcalls = self.pfailures = self.pslow = 0
        self.clean = False

    # -- script arguments ----------------------------------------------------------------

    def _clock_arg(self) -> tuple[str, float]:
        """ARGV[2] and the matching time on this replica's clock."""
        clock = self.server_clock
        if clock is None:
            return "-", self.now()
        server_now = clock.monotonic()
        return repr(server_now), server_now if self.same_base else self.now()

    def _request(
        self, op: str, hint: float | None = None, target: str = "", extra: str = "", flags: int = 0
    ) -> list[Any]:
        """The ARGV of one step (under the lock); admit/flush/read carry the pending outcomes.

        ``extra`` is the reason of a change by hand; *target* its state, or a probe's permit
        (and then *flags* its outcome)."""
        now_arg, now = self._clock_arg()
        if op in ("admit", "flush", "read"):
            generation, batch, trailing, clean = self._take(now)
        else:
            generation, batch, trailing, clean = "-", b"", 0, "0"
        hint_arg = "-" if hint is None else repr(hint)
        head = f"{op} {now_arg} {generation} {trailing} {clean} {hint_arg} {target or '-'} {flags}"
        return [head, self.settings, batch, extra]

    def _reachable(self) -> bool:
        health = self.health
        return health.up or health.should_try()

    def plan_admit(self, now: float) -> tuple[Admission | None, list[Any] | None]:
        """``(decision, None)`` when the view decides, ``(None, args)`` for an ``admit``
        step, ``(None, None)`` when Redis is down and not due for a probe."""
        with self.lock:
            if not self.local_active:
                decided = self._cached(now)
                if decided is not None:
                    return decided, None
        if not self._reachable():
            return None, None
        with self.lock:
            return None, self._request("admit")

    def reject_open(self, now: float) -> Admission:
        """The rejection of a call while the view is OPEN (``now < gate``), lock-free."""
        if _LOCK_FREE:
            self.rejected.add()
        else:  # pragma: no cover - free-threaded builds
            with self.lock:
                self.rejected.add()
        return REJECT, retry_after_until(self.open_until, now), "circuit_open", None

    def _cached(self, now: float) -> Admission | None:
        """The view's decision for a call at *now*, if it may decide (under the lock).

        Every caller that finds the view stale asks Redis itself (no caller waits for
        another's answer, and none is decided on a view older than ``flush_interval``):
        a few round trips per refresh under concurrency, never one per call."""
        if now >= self.fresh_until:
            return None
        state = self.state
        if state is CLOSED:
            return self.generation, None, "", None
        if state is DISABLED:
            return PASS, None, "", None
        if state is OPEN:
            if now < self.open_until:
                self.rejected.add()
                return REJECT, retry_after_until(self.open_until, now), "circuit_open", None
            return None
        if state is FORCED_OPEN:
            self.rejected.add()
            return REJECT, None, "forced_open", None
        if self.full:
            self.rejected.add()
            return REJECT, None, "half_open_full", None
        return None

    def flush_request(self, hint: float | None = None) -> list[Any] | None:
        """A ``flush`` step for the pending outcomes (``None``: nothing to send, or
        Redis is down: they stay pending)."""
        if not self._reachable():
            return None
        with self.lock:
            if self.oks is not None:
                self._fold()
            if not self.pcalls:
                return None
            return self._request("flush", hint)

    def report_request(self, probe: Probe, outcome: int, hint: float | None) -> list[Any] | None:
        """A probe's verdict (``None`` when Redis is down: the permit then expires after
        ``half_open_max_wait`` and counts as a failed, slow probe)."""
        if not self._reachable():
            return None
        with self.lock:
            return self._request("report", hint, str(probe.permit), flags=outcome)

    def release_request(self, probe: Probe) -> list[Any] | None:
        if not self._reachable():
            return None
        with self.lock:
            return self._request("release", None, str(probe.permit))

    def command_request(
        self, op: str, state: CircuitState | None = None, why: str = ""
    ) -> list[Any]:
        """A ``set`` (to *state*, by hand) or ``read`` step: tried whatever Redis's health."""
        with self.lock:
            return self._request(op, None, "" if state is None else state.value, why)

    # -- answers -------------------------------------------------------------------------

    def admitted(self, reply: Any) -> Admission:
        """The decision in the answer to an ``admit`` step."""
        changes, ticket, now, state, generation, until = self._absorb(reply)
        if ticket >= 0:
            if state is CLOSED:
                return ticket, None, "", changes
            if state is DISABLED:
                return PASS, None, "", changes
            return Probe(ticket), None, "", changes
        self.rejected.add()
        if state is OPEN:
            return REJECT, retry_after_until(until, now), "circuit_open", changes
        if state is FORCED_OPEN:
            return REJECT, None, "forced_open", changes
        with self.lock:
            if generation == self.generation:
                self.full = True
        return REJECT, None, "half_open_full", changes

    def absorb(self, reply: Any) -> Changes:
        """Take the answer to any step into the view; the changes to report."""
        return self._absorb(reply)[0]

    def _absorb(self, reply: Any) -> tuple[Changes, int, float, CircuitState, int, float]:
        """``(changes, ticket, now, state, generation, open_until)`` of an answer (its
        state and open period as it says, the time on this replica's clock)."""
        try:
            lines = _text(reply).split("\n")
            head = lines[0].split(" ")
            state = CircuitState(head[0])
            generation, ticket = int(head[1]), int(head[2])
            server_now, until, since = float(head[3]), float(head[4]), float(head[5])
            calls, failures, slow, streak, inflight = (int(x) for x in head[6:11])
            first, first_since = CircuitState(head[11]), float(head[12])
            why, first_why = lines[1], lines[2]
            if len(head) != 13 or len(lines) % 2 == 0:
                raise ValueError
            steps = []
            for i in range(3, len(lines), 2):
                old, new = lines[i].split(" ")
                steps.append((CircuitState(old), CircuitState(new), lines[i + 1]))
        except (TypeError, ValueError, IndexError, UnicodeDecodeError) as exc:
            msg = f"unexpected reply to the circuit breaker script: {reply!r:.200}"
            raise BadReplyError(msg) from exc
        health = self.health
        if not health.up:
            health.succeeded()
        now = self.now()
        if self.same_base:
            offset = 0.0
            local_until = until
        else:
            offset = now - server_now
            local_until = now + (until - server_now)
        changes: list[_Change] = []
        with self.lock:
            if generation < self.generation:
                # An answer overtaken by a newer one (concurrent steps): its decision
                # stands, but the view stays as the newer answer left it.
                return None, ticket, now, state, generation, local_until
            view = self.view
            if first is not view:  # changed elsewhere since this replica last looked
                changes.append(_Change(view, first, first_why, first_since + offset))
            at = server_now + offset
            changes.extend(_Change(old, new, text, at) for old, new, text in steps)
            self.state = state
            if generation != self.generation:
                self.generation = generation
                self.full = False
            wanted = generation if state is CLOSED else _NO_GENERATION
            if self.pending_gen != wanted:
                self._drop_pending(wanted)
            self.since = since + offset
            self.why = why
            self.open_until = local_until if state is OPEN else _NEVER
            self.calls, self.failures, self.slow = calls, failures, slow
            self.streak, self.inflight = streak, inflight
            fresh = now + self.flush_interval
            if state is OPEN:
                fresh = min(fresh, local_until)
            self.fresh_until = fresh
            if state is CLOSED or state is DISABLED:
                self.fast = generation if state is CLOSED else PASS
                self.fast_until = fresh
            else:
                self.fast_until = _NEVER
            self.gate = fresh if state is OPEN else _NEVER
            self.view = state
            self.local_active = False
        return changes or None, ticket, now, state, generation, local_until

    # -- failures ------------------------------------------------------------------------

    def error(self, exc: BaseException | None, operation: str = "circuit_breaker") -> BackendError:
        """*exc* as a BackendError (an outage marks Redis down); ``None``: Redis is down
        and was not called."""
        health = self.health
        if exc is None:
            last = health.last_error
            detail = f"not called for {health.retry_after():.3f}s more after a failure"
            if last is not None:
                detail += f" ({last.detail})"
            error = BackendError(self.shared.backend, operation, detail)
            error.__cause__ = None if last is None else last.__cause__
            return error
        error = backend_error(exc, self.shared.backend, operation)
        if error is not exc:
            error.__cause__ = exc
        if is_outage(exc):
            health.failed(error)
        return error

    def lost(self, exc: Exception) -> None:
        """A best-effort step failed: what it carried is dropped (it may have run)."""
        self.error(exc)

    def fallback(self, now: float, exc: Exception | None) -> Admission:
        """The decision for a call that Redis could not decide (``on_backend_error``)."""
        error = None if exc is None else self.error(exc)
        mode = self.mode
        if mode == "raise":
            raise error or self.error(None)
        if mode == "allow":
            return PASS, None, "", None
        if mode == "deny":
            self.rejected.add()
            return REJECT, max(self.health.retry_after(), _MIN_RETRY), "backend_unavailable", None
        return self._local_admit(now)

    # -- the in-memory stand-in ------------------------------------------------------------

    def _local_admit(self, now: float) -> Admission:
        with self.lock:
            if not self.local_active:
                self.local_active = True
                self._seed_local(now)
            self.fresh_until = self.fast_until = self.gate = _NEVER
        ticket, retry_after, reason, changes = self.local.admit()
        self._local_view(changes)
        return (LocalTicket(ticket) if ticket >= 0 else ticket), retry_after, reason, changes

    def _seed_local(self, now: float) -> None:
        """Start the stand-in where the shared breaker was last seen (under the lock):
        an open breaker stays open for the rest of its period, a closed one starts
        with an empty window."""
        local, state = self.local, self.state
        scratch: list[_Change] = []
        with local.lock:
            if state is OPEN and self.open_until > now:
                local._open(now, self.why, scratch, self.open_until - now)
            elif state is OPEN:
                local._move(HALF_OPEN, self.why, now, scratch)
            else:
                local._move(state, self.why, now, scratch)

    def _local_view(self, changes: Changes) -> None:
        if changes:
            with self.lock:
                if self.local_active:
                    self.view = changes[-1].new

    def local_record(
        self, ticket: LocalTicket, outcome: int, end: float, hint: float | None
    ) -> Changes:
        changes = self.local.record(ticket.ticket, outcome, end, hint)
        if not self.local_active:
            return None  # back on Redis: the stand-in's changes are nobody's view
        self._local_view(changes)
        return changes

    def local_set(self, state: CircuitState, why: str) -> Changes:
        """Apply a change made by hand to the stand-in too."""
        changes = self.local.transition(state, why)
        if not self.local_active:
            return None
        self._local_view(changes)
        return changes

    def _rejected(self) -> int:
        """Calls this replica refused (under the lock), the stand-in's included."""
        with self.local.lock:
            return self.rejected.value() + self.local.rejected.value()

    # -- reading the view ------------------------------------------------------------------

    def current(self) -> tuple[CircuitState, Changes]:
        """The state as this replica sees it (no I/O): an OPEN breaker whose period has
        passed reads HALF_OPEN, as the next call will find it."""
        if self.local_active:
            state, changes = self.local.current()
            self._local_view(changes)
            return state, changes or None
        with self.lock:
            state = self.state
            if state is OPEN and self.now() >= self.open_until:
                return HALF_OPEN, None
            return state, None

    def snapshot(self) -> tuple[CircuitBreakerStats, Changes]:
        """The view as stats: the fleet's counts as of the last answer from Redis, this
        replica's rejections; the stand-in's own stats while it decides."""
        if self.local_active:
            stats, changes = self.local.snapshot()
            self._local_view(changes)
            return stats, changes or None
        now = self.now()
        with self.lock:
            state = self.state
            retry_after: float | None = None
            if state is OPEN:
                if now >= self.open_until:
                    state = HALF_OPEN
                else:
                    retry_after = retry_after_until(self.open_until, now)
            calls, failures, slow = self.calls, self.failures, self.slow
            return CircuitBreakerStats(
                state=state,
                calls=calls,
                failed_calls=failures,
                slow_calls=slow,
                failure_rate=failures / calls if calls else 0.0,
                slow_call_rate=slow / calls if calls else 0.0,
                consecutive_failures=self.streak,
                rejected=self._rejected(),
                since=self.since,
                retry_after=retry_after,
                probes_in_flight=self.inflight,
                generation=max(self.generation, 0),
            ), None
