"""``load_config`` and the ``Registry`` of named pipelines it returns, with reload.

``import resilient`` imports this module, so it imports nothing else of the config
package (nor anything heavy) until a file is loaded.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._clock import Clock
from .._errors import ConfigError
from .._pipeline import Pipeline, PolicyBase
from .._types import P, T
from ..observability._emit import Listener

if TYPE_CHECKING:
    from pathlib import Path

    from .._budget import RetryBudget
    from ..dashboard._live import LiveStats
    from ._build import Built
    from ._lint import Estimate, LintWarning
    from ._schema import ConfigDocument, Routes
    from ._validate import Locator

__all__ = ["Registry", "ReloadResult", "Watcher", "load_config"]

logger = logging.getLogger("resilient.config")


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any],
    format: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    listeners: Sequence[Listener] | None = None,
    resolve_imports: bool = False,
) -> Registry:
    """Load a policy file and build its named pipelines.

    Args:
        source: a file path (``"policies.yaml"``, a ``pathlib.Path``), the text of a
            document (a ``str`` with a newline, or a one-line document such as
            ``'{"policies": {}}'``; a single word is a file name), or an already parsed
            mapping.
        format: ``"yaml"`` (needs the ``yaml`` extra), ``"toml"`` or ``"json"``;
            ``None``: from the file's suffix, or guessed for text.
        env: the variables ``${NAME}`` and ``${NAME:-default}`` read; ``None``:
            ``os.environ`` (read again on every reload).
        clock: the clock of every policy (``resilient.testing.FakeClock`` in tests);
            ``None``: the system clock.
        listeners: event listeners given to every policy; ``None``: the global ones.
        resolve_imports: import the exception classes and callables the file names
            now, reporting failures with the other errors; by default each is imported
            when first needed, so a module may load a file that names its own classes.

    Returns:
        A :class:`Registry`: ``registry["payments"]`` is the built pipeline.

    Raises:
        ConfigError: the file cannot be read or is invalid. Every problem is reported
            at once (``err.errors``), each with the file, line, dotted path, the bad
            value and what was expected. Validation needs ``pydantic`` (the ``config``
            extra).

    Added in version 0.1.
    """
    return Registry(
        source,
        format,
        env=env,
        clock=clock,
        listeners=listeners,
        resolve_imports=resolve_imports,
    )


class _Origin:
    """Where a registry's document comes from, and how to tell that it changed."""

    __slots__ = ("format", "path", "source", "stamp")

    def __init__(self, source: Any, format: str | None) -> None:
        self.source = source
        self.format = format
        self.path: Path | None = None
        self.stamp: tuple[int, int] | None = None

    def read(self) -> Any:
        from ._parse import Document, Lines, read_source

        if isinstance(self.source, Mapping):
            return Document(dict(self.source), Lines(), None, None, "json")
        doc = read_source(self.source, self.format)
        self.path = doc.path
        return doc


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What a reload changed, by policy name (each sorted)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


class _State:
    """One loaded version of the document and what was built from it (never mutated)."""

    __slots__ = ("built", "digest", "document", "estimates", "locator", "warnings")

    def __init__(
        self,
        document: ConfigDocument,
        locator: Locator,
        built: Built,
        warnings: tuple[LintWarning, ...],
        digest: bytes | None,
    ) -> None:
        self.document = document
        self.locator = locator
        self.built = built
        self.warnings = warnings
        self.digest = digest
        self.estimates: dict[str, Estimate] = {}


class Registry(Mapping[str, Pipeline]):
    """The named pipelines of a policy file: ``load_config(...)`` or ``Registry(...)``
    (same arguments).

    ``registry["payments"]`` is the :class:`~resilient.Pipeline` built for the
    policy ``payments``: built once and shared, so everyone using the name shares
    its breaker, limiter, bulkhead and budget state. A registry is a read-only
    mapping (``in``, ``len``, iteration, ``.get``), safe to use from any thread.

    **Reload.** :meth:`reload` (or :meth:`poll`, or a :meth:`watch` thread) reads
    the file again. A file that does not validate is rejected whole and the
    registry stays as it was. A policy whose settings did not change keeps its
    pipeline object; a changed one gets a new pipeline in which every step whose
    own settings did not change is the same object as before (a breaker keeps its
    window and state, a bulkhead its slots). A rate limiter whose rate did not change
    keeps its counts even when another of its settings did; a breaker whose own
    settings changed starts afresh. Calls already running
    finish on the pipeline they started with. Code that keeps a pipeline for a long
    time and wants to follow reloads holds :meth:`live` instead.

    Added in version 0.1.
    """

    _state: _State

    def __init__(
        self,
        source: str | os.PathLike[str] | Mapping[str, Any],
        format: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        listeners: Sequence[Listener] | None = None,
        resolve_imports: bool = False,
    ) -> None:
        from ._build import Options

        self._origin = _Origin(source, format)
        self._env = env
        self._options = Options(
            clock, tuple(listeners) if listeners is not None else None, resolve_imports
        )
        self._lock = threading.Lock()
        self._rejected: bytes | None = None
        self._state = self._load(None)
        self._log_warnings(self._state)

    # -- loading -----------------------------------------------------------------------------

    def _load(self, previous: _State | None) -> _State:
        import hashlib

        from ._build import build
        from ._lint import lint
        from ._validate import validate

        doc = self._origin.read()
        digest = hashlib.sha256(doc.text.encode()).digest() if doc.text is not None else None
        env = self._env if self._env is not None else os.environ
        document, locator = validate(doc, env)
        built = build(document, locator, self._options, previous.built if previous else None)
        return _State(document, locator, built, tuple(lint(document, locator)), digest)

    def _log_warnings(self, state: _State, before: tuple[LintWarning, ...] = ()) -> None:
        for warning in state.warnings:
            if warning not in before:
                logger.warning("%s", warning)

    def reload(
        self,
        source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        format: str | None = None,
    ) -> ReloadResult:
        """Read the file again (or load *source* instead) and swap in what changed.

        Raises:
            ConfigError: the new document is invalid; nothing was changed.
        """
        with self._lock:
            origin = self._origin
            if source is not None:
                self._origin = _Origin(source, format)
            try:
                state = self._load(self._state)
            except BaseException:
                self._origin = origin
                raise
            return self._swap(state)

    def _swap(self, state: _State) -> ReloadResult:
        old = self._state.built.pipelines
        new = state.built.pipelines
        before = self._state.warnings
        self._state = state
        self._rejected = None
        self._log_warnings(state, before)
        result = ReloadResult(
            added=tuple(sorted(set(new) - set(old))),
            removed=tuple(sorted(set(old) - set(new))),
            changed=tuple(sorted(n for n in new if n in old and new[n] is not old[n])),
            unchanged=tuple(sorted(n for n in new if n in old and new[n] is old[n])),
        )
        if result:
            logger.info(
                "resilient: reloaded %s (added %s, removed %s, changed %s)",
                self.source or "the policies",
                list(result.added),
                list(result.removed),
                list(result.changed),
            )
        return result

    def poll(self) -> ReloadResult | None:
        """Reload if the file changed since it was last read; ``None`` if it did not.

        A changed file that does not validate raises :class:`ConfigError` once; the
        same content is then ignored until the file changes again. A registry not
        loaded from a file never changes.
        """
        stamp = self._stamp()
        if stamp is None or stamp == self._origin.stamp:
            return None
        path = self._origin.path
        assert path is not None
        import hashlib

        try:
            digest = hashlib.sha256(path.read_bytes().decode("utf-8-sig").encode()).digest()
        except (OSError, UnicodeDecodeError):
            digest = None
        if digest is not None and digest in (self._state.digest, self._rejected):
            self._origin.stamp = stamp
            return None
        with self._lock:
            try:
                state = self._load(self._state)
            except ConfigError:
                self._rejected = digest
                self._origin.stamp = stamp
                raise
            self._origin.stamp = stamp
            return self._swap(state)

    def _stamp(self) -> tuple[int, int] | None:
        """The file's (modification time, size), or ``None`` (no file, or being replaced)."""
        path = self._origin.path
        if path is None:
            return None
        try:
            stat = path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def watch(
        self,
        interval: float = 2.0,
        *,
        on_reload: Callable[[ReloadResult], object] | None = None,
        on_error: Callable[[ConfigError], object] | None = None,
    ) -> Watcher:
        """Start a daemon thread that :meth:`poll`\\ s the file every *interval* seconds.

        A change is read once the file has stayed the same for one interval, so a file
        being written in place is not read half-way (writing a new file and renaming it
        over the old one is better still).

        Errors are logged on the ``"resilient.config"`` logger and passed to
        *on_error*; the registry keeps its current policies. Stop the thread with
        ``watcher.stop()`` (or use it as a context manager).
        """
        if self._origin.path is None:
            raise ConfigError("watch", None, "a registry loaded from a file")
        watcher = Watcher(self, interval, on_reload, on_error)
        watcher.start()
        return watcher

    # -- the mapping -------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Pipeline:
        pipelines = self._state.built.pipelines
        try:
            return pipelines[name]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(str(name), list(pipelines), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            names = ", ".join(pipelines) or "none"
            msg = f"no policy named {name!r}{hint}; the policies are: {names}"
            raise KeyError(msg) from None

    def require(self, name: str) -> None:
        """Raise ``KeyError`` (naming the policies, and the closest) if *name* is unknown."""
        self.__getitem__(name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._state.built.pipelines))

    def __len__(self) -> int:
        return len(self._state.built.pipelines)

    def __contains__(self, name: object) -> bool:
        return name in self._state.built.pipelines

    # -- what else a file holds --------------------------------------------------------------

    @property
    def document(self) -> ConfigDocument:
        """The validated document, with ``extends`` and ``defaults`` resolved."""
        return self._state.document

    @property
    def routes(self) -> Routes:
        """The file's routes, for the adapters (``registry.routes.for_httpx(...)``)."""
        return self._state.document.routes

    @property
    def budgets(self) -> Mapping[str, RetryBudget]:
        """The file's shared retry budgets (``budgets:``) by name: the very objects the
        retries naming them use, for code that builds its own ``Retry``."""
        import types

        return types.MappingProxyType({k: v[1] for k, v in self._state.built.budgets.items()})

    @property
    def warnings(self) -> tuple[LintWarning, ...]:
        """The :class:`LintWarning`\\ s of the current document."""
        return self._state.warnings

    @property
    def source(self) -> str | None:
        """The file the registry reads, or ``None`` if it was loaded from text or a mapping."""
        path = self._origin.path
        return os.fspath(path) if path is not None else None

    def estimate(self, name: str) -> Estimate:
        """The worst-case latency and load amplification of policy *name* (an
        :class:`Estimate`)."""
        from ._lint import estimate

        state = self._state
        found: Estimate | None = state.estimates.get(name)
        if found is None:
            self.require(name)
            document = state.document
            found = state.estimates[name] = estimate(document.policies[name], document.budgets)
        return found

    def live(self, name: str) -> LivePolicy:
        """A policy that runs whatever pipeline *name* has at the time of each call, so it
        follows reloads (use it as a decorator, or give it to an adapter)."""
        self.require(name)
        return LivePolicy(self, name)

    def grpc_routes(self, side: str | None = None) -> Mapping[str, Pipeline]:
        """The gRPC routes as the interceptors take them (``routes=``): a mapping of method
        pattern to the pipeline its policy has *now*, so reloaded policies are followed.

        Args:
            side: ``"client"`` or ``"server"`` keeps the routes for that side (and those
                for both); ``None`` keeps all.
        """
        return _GrpcRoutes(self, side)

    def describe(self, name: str | None = None) -> str:
        """The resolved pipelines as text (what ``resilient show`` prints)."""
        from ._render import describe

        return describe(self, name)

    def snapshot(self, *, top_keys: int = 5, live: LiveStats | None = None) -> dict[str, Any]:
        """Every policy's live state and statistics (breaker states, limiter counts and
        their busiest keys, bulkhead occupancy...) as versioned, JSON-ready data: see
        :func:`resilient.dashboard.snapshot` (what ``resilient top`` shows)."""
        from ..dashboard._snapshot import snapshot

        return snapshot(self, top_keys=top_keys, live=live)

    def __repr__(self) -> str:
        where = f" from {self.source!r}" if self.source else ""
        return f"<Registry{where}: {', '.join(self) or 'no policies'}>"


class _GrpcRoutes(Mapping[str, Pipeline]):
    """A live view: method pattern -> the registry's current pipeline for its policy."""

    def __init__(self, registry: Registry, side: str | None) -> None:
        if side not in (None, "client", "server"):
            raise ConfigError("side", side, "'client', 'server' or None")
        self._registry = registry
        self._side = side

    def _table(self) -> dict[str, str]:
        table: dict[str, str] = {}
        for route in self._registry.routes.grpc:
            if self._side is None or route.side in (None, self._side):
                table.setdefault(route.pattern, route.policy)
        return table

    def __getitem__(self, pattern: str) -> Pipeline:
        return self._registry[self._table()[pattern]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return f"<gRPC routes: {self._table()!r}>"


class LivePolicy(PolicyBase):
    """Runs the registry's current pipeline for a name (see :meth:`Registry.live`)."""

    kind = "live"

    def __init__(self, registry: Registry, name: str) -> None:
        self._registry = registry
        self._init_base(name, None, None)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._registry[self.name].call(fn, *args, **kwargs)

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._registry[self.name].acall(fn, *args, **kwargs)

    def __repr__(self) -> str:
        return f"LivePolicy({self.name!r})"


class Watcher:
    """A daemon thread polling a registry's file (see :meth:`Registry.watch`)."""

    def __init__(
        self,
        registry: Registry,
        interval: float,
        on_reload: Callable[[ReloadResult], object] | None,
        on_error: Callable[[ConfigError], object] | None,
    ) -> None:
        from .._duration import to_seconds

        self.registry = registry
        self.interval = to_seconds(interval, name="interval", allow_zero=False)
        self.on_reload = on_reload
        self.on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"resilient-watch:{registry.source}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop polling (and wait for the thread, up to *timeout* seconds)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        # A change is read once the file has kept the same size and modification time for
        # one interval, so that a file being written in place is not read half-way.
        seen = self.registry._stamp()
        while not self._stop.wait(self.interval):
            stamp = self.registry._stamp()
            if stamp == seen:
                self.check()
            seen = stamp

    def check(self) -> None:
        """One poll, with errors logged and reported instead of raised."""
        try:
            result = self.registry.poll()
        except ConfigError as exc:
            logger.error(
                "resilient: rejected the new version of %s, keeping the current policies:\n%s",
                self.registry.source,
                exc,
            )
            if self.on_error is not None:
                _safely(self.on_error, exc)
            return
        except Exception:
            logger.exception("resilient: could not reload %s", self.registry.source)
            return
        if result is not None and self.on_reload is not None:
            _safely(self.on_reload, result)


def _safely(callback: Callable[[Any], object], value: Any) -> None:
    try:
        callback(value)
    except Exception:
        logger.exception("resilient: a config watcher callback raised")
