"""What a policy does when its shared backend fails, and when to try the backend again.

Not specific to Redis or to rate limits: any store that talks to a server uses
the same four modes (``on_backend_error``) and the same :class:`BackendHealth`
gate, so that rate limiters and shared breakers fail the same way.

* ``"raise"``: the call gets :class:`~resilient.BackendError` (the default: an
  outage is never hidden unless asked).
* ``"allow"``: the call is admitted as if the backend had said yes (fail open).
* ``"deny"``: the call is refused as if the backend had said no (fail closed).
* ``"local"``: the call is decided by an in-process twin of the backend (this
  process's share of the state only) until the backend answers again.

After a failure the backend is *down*: for ``probe_interval`` seconds nobody
calls it (a dead server costs nothing per call, not even a connection
attempt); then the next call is the probe, and its success brings every caller
back. The transitions are reported once each, as
:class:`~resilient.observability.BackendFailed` and
:class:`~resilient.observability.BackendRecovered`, to every policy that
:meth:`watches <BackendHealth.watch>` the backend.
"""

from __future__ import annotations

import threading
import weakref
from typing import Final, Literal, TypeAlias, cast

from .._clock import Clock
from .._errors import BackendError, ConfigError
from ..observability._emit import Emitter
from ..observability._events import BackendFailed, BackendRecovered, Event

__all__ = [
    "DEFAULT_PROBE_INTERVAL",
    "MODES",
    "BackendHealth",
    "OnBackendError",
    "check_mode",
    "check_probe_interval",
]

OnBackendError: TypeAlias = Literal["raise", "allow", "deny", "local"]
MODES: Final = ("raise", "allow", "deny", "local")

DEFAULT_PROBE_INTERVAL = 0.5
"""Seconds between two attempts to reach a backend that is down."""


def check_mode(value: object, path: str = "on_backend_error") -> OnBackendError:
    """*value* if it is one of :data:`MODES`, else :class:`~resilient.ConfigError`."""
    if not isinstance(value, str) or value not in MODES:
        raise ConfigError(path, value, "one of 'raise', 'allow', 'deny', 'local'")
    return cast(OnBackendError, value)


def check_probe_interval(value: object, path: str = "probe_interval") -> float:
    """*value* as seconds (a finite number >= 0), else :class:`~resilient.ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e9:
        raise ConfigError(path, value, "a finite number of seconds >= 0")
    return float(value)


class _Watcher:
    __slots__ = ("clock", "kind", "mode", "policy")

    def __init__(self, policy: str, kind: str, clock: Clock, mode: str) -> None:
        self.policy = policy
        self.kind = kind
        self.clock = clock
        self.mode = mode


class BackendHealth:
    """Up or down, when to probe a backend that is down, and who to tell.

    Thread-safe; the lock guards a few assignments and is never held while
    calling the backend or a listener. ``up`` is a plain attribute so that the
    hot path of a healthy backend costs one attribute read.

    Args:
        backend: the backend's redacted description (for events and errors).
        clock: the time source of the probe interval.
        probe_interval: seconds during which a backend that failed is not
            called; ``0`` calls it every time.
    """

    __slots__ = (
        "_lock",
        "_retry_at",
        "_watchers",
        "backend",
        "clock",
        "last_error",
        "probe_interval",
        "up",
    )

    def __init__(self, backend: str, clock: Clock, probe_interval: float) -> None:
        self.backend = backend
        self.clock = clock
        self.probe_interval = probe_interval
        self.up = True
        self.last_error: BackendError | None = None
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._watchers: weakref.WeakKeyDictionary[Emitter, _Watcher] = weakref.WeakKeyDictionary()

    def watch(self, emitter: Emitter, policy: str, kind: str, clock: Clock, mode: str) -> None:
        """Send this backend's failures and recoveries to *emitter* (held weakly)
        as events of the policy *policy* of kind *kind*, timed on *clock*; *mode*
        is the ``on_backend_error`` the policy applies."""
        with self._lock:
            self._watchers[emitter] = _Watcher(policy, kind, clock, mode)

    def should_try(self) -> bool:
        """Whether to call the backend now: it is up, or down and due for a probe
        (then this caller is the probe, and the next one waits another interval)."""
        if self.up:
            return True
        now = self.clock.monotonic()
        with self._lock:
            if now < self._retry_at:
                return False
            self._retry_at = now + self.probe_interval
            return True

    def retry_after(self) -> float:
        """Seconds until the next probe (``0.0`` when up or due)."""
        if self.up:
            return 0.0
        left = self._retry_at - self.clock.monotonic()
        return left if left > 0 else 0.0

    def failed(self, error: BackendError) -> None:
        """Record an outage: down until the next probe; watchers hear of it once."""
        now = self.clock.monotonic()
        with self._lock:
            was_up = self.up
            self.up = False
            self.last_error = error
            self._retry_at = now + self.probe_interval
            watchers = list(self._watchers.items()) if was_up else []
        for emitter, watcher in watchers:
            self._emit(
                emitter,
                BackendFailed(
                    policy=watcher.policy,
                    kind=watcher.kind,
                    at=watcher.clock.monotonic(),
                    backend=self.backend,
                    error=error,
                    mode=watcher.mode,
                ),
            )

    def succeeded(self) -> None:
        """Record an answer: a backend that was down is up again (watchers hear of it once)."""
        if self.up:
            return
        with self._lock:
            if self.up:
                return
            self.up = True
            self.last_error = None
            watchers = list(self._watchers.items())
        for emitter, watcher in watchers:
            self._emit(
                emitter,
                BackendRecovered(
                    policy=watcher.policy,
                    kind=watcher.kind,
                    at=watcher.clock.monotonic(),
                    backend=self.backend,
                ),
            )

    @staticmethod
    def _emit(emitter: Emitter, event: Event) -> None:
        emitter.emit(event)

    def __repr__(self) -> str:
        state = "up" if self.up else "down"
        return f"BackendHealth({self.backend!r}, {state}, probe_interval={self.probe_interval})"
