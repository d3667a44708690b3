"""The shared breaker when Redis fails: killed and restarted, hung, back again.

For each ``on_backend_error`` mode, sync and async: calls the view can decide go on
without Redis; once the view is older than ``flush_interval`` every call gets what
the mode documents (``BackendError``, admitted, refused with
``backend_unavailable``, or decided by the in-memory stand-in), no call outlives the
socket timeout, Redis is left alone for the probe interval, recording an outcome
never raises, and once Redis answers again the breaker is shared again. Time is a
fake clock (the store decides on it and times the probe interval with it); only
the server is real.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _redis_support import unique_prefix, wait_for
from _servers import RedisServer

import resilient as rs
from resilient import BackendError
from resilient.backends.redis import AsyncRedisStore, RedisStore, SharedCircuitBreaker
from resilient.observability import BackendFailed, BackendRecovered, CircuitStateChanged
from resilient.testing import FakeClock, RecordingListener

pytestmark = pytest.mark.redis

MODES = ["raise", "allow", "deny", "local"]
TIMEOUT = 0.2
SLACK = 1.0  # seconds a call may take beyond the socket timeout on a loaded machine
PROBE = 0.5
PROBE_DEFAULT = 0.5  # a store's default probe_interval


class Replica:
    """A shared breaker driven through ``call`` or ``acall`` (on a loop of its own)."""

    def __init__(self, url: str, flavour: str, mode: str, clock: FakeClock, **config: Any) -> None:
        cls = AsyncRedisStore if flavour == "async" else RedisStore
        self.store = cls(
            url, timeout=TIMEOUT, probe_interval=PROBE, clock=clock, prefix=unique_prefix("f")
        )
        self.events = RecordingListener()
        settings = {"window": rs.CountWindow(4), "minimum_calls": 2, "open_for": 30.0}
        self.breaker = SharedCircuitBreaker(
            name="faults",
            store=self.store,
            on_backend_error=mode,  # type: ignore[arg-type]
            listeners=[self.events],
            **{**settings, **config},
        )
        self.loop = asyncio.new_event_loop() if flavour == "async" else None
        self.ran = 0

    def call(self, fail: bool = False) -> Any:
        """The call's result or the exception it raised, and how long it took."""

        def work() -> str:
            self.ran += 1
            if fail:
                raise OSError("dependency down")
            return "ran"

        async def awork() -> str:
            return work()

        start = time.monotonic()
        try:
            if self.loop is None:
                result: Any = self.breaker.call(work)
            else:
                result = self.loop.run_until_complete(self.breaker.acall(awork))
        except Exception as exc:
            result = exc
        took = time.monotonic() - start
        assert took < TIMEOUT + SLACK, f"a call took {took:.3f}s"
        return result

    def run(self, method: str) -> Any:
        if self.loop is None:
            return getattr(self.breaker, method)()
        return self.loop.run_until_complete(getattr(self.breaker, "a" + method)())

    def close(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.store.aclose())
            self.loop.close()
        else:
            self.store.close()


@pytest.fixture
def make(own_redis: RedisServer) -> Iterator[Callable[..., Replica]]:
    made: list[Replica] = []

    def factory(flavour: str, mode: str, clock: FakeClock, **config: Any) -> Replica:
        replica = Replica(own_redis.url, flavour, mode, clock, **config)
        made.append(replica)
        return replica

    yield factory
    for replica in made:
        replica.close()


def check_outage_answer(mode: str, answer: Any) -> None:
    if mode == "raise":
        assert isinstance(answer, BackendError), answer
        assert "faults" not in str(answer) or "redis://" in str(answer)
    elif mode == "allow":
        assert answer == "ran"
    elif mode == "deny":
        assert isinstance(answer, rs.CircuitOpenError), answer
        assert answer.reason == "backend_unavailable"
        assert answer.retry_after is not None
        assert answer.retry_after > 0
    else:
        assert answer == "ran"


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("mode", MODES)
def test_redis_killed_and_restarted(own_redis, make, flavour, mode):
    clock = FakeClock()
    replica = make(flavour, mode, clock)
    assert replica.call() == "ran"
    own_redis.stop()
    # The view is fresh for flush_interval: no Redis needed, whatever the mode.
    for _ in range(5):
        assert replica.call() == "ran"
    assert replica.events.of(BackendFailed) == []
    clock.advance(1.0)
    answer = replica.call()  # needs Redis: connection refused
    check_outage_answer(mode, answer)
    failed = replica.events.of(BackendFailed)
    assert [e.mode for e in failed] == [mode]
    # Within the probe interval Redis is not called; every call gets the mode.
    for _ in range(3):
        check_outage_answer(mode, replica.call())
    own_redis.start()  # empty: no persistence
    for _ in range(2):
        check_outage_answer(mode, replica.call())  # still within the probe interval
    clock.advance(PROBE)
    assert replica.call() == "ran"  # the probe: Redis is back
    assert len(replica.events.of(BackendRecovered)) == 1
    assert len(replica.events.of(BackendFailed)) == 1
    assert replica.breaker.state is rs.CircuitState.CLOSED
    stats = replica.run("flush")
    assert stats.calls == 1  # the restarted server lost the old window; the probe's call


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_local_mode_keeps_protecting_while_redis_is_away(own_redis, make, flavour):
    clock = FakeClock()
    replica = make(flavour, "local", clock)
    assert replica.call() == "ran"
    own_redis.stop()
    clock.advance(1.0)
    for _ in range(2):
        assert isinstance(replica.call(fail=True), OSError)  # counted by the stand-in
    refused = replica.call()
    assert isinstance(refused, rs.CircuitOpenError)
    assert (refused.reason, refused.retry_after) == ("circuit_open", 30.0)
    assert replica.breaker.state is rs.CircuitState.OPEN
    own_redis.start()
    clock.advance(PROBE)
    assert replica.call() == "ran"  # shared again: the (restarted, empty) Redis says CLOSED
    changes = [(e.old, e.new) for e in replica.events.of(CircuitStateChanged)]
    assert changes == [
        (rs.CircuitState.CLOSED, rs.CircuitState.OPEN),
        (rs.CircuitState.OPEN, rs.CircuitState.CLOSED),
    ]


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_local_mode_starts_where_the_shared_breaker_was(own_redis, make, flavour):
    clock = FakeClock()
    replica = make(flavour, "local", clock)
    for _ in range(2):
        assert isinstance(replica.call(fail=True), OSError)
    assert replica.breaker.state is rs.CircuitState.OPEN  # shared, until t=30
    own_redis.stop()
    clock.advance(10.0)
    refused = replica.call()  # the view is stale; the stand-in starts OPEN until t=30
    assert isinstance(refused, rs.CircuitOpenError)
    assert refused.retry_after == 20.0
    assert replica.ran == 2
    clock.advance(20.0)
    assert replica.call() == "ran"  # the stand-in's probe


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_outcomes_and_probe_verdicts_never_raise_when_redis_fails(own_redis, make, flavour):
    clock = FakeClock()
    replica = make(flavour, "raise", clock, half_open_calls=1, flush_interval=0)
    for _ in range(2):
        assert isinstance(replica.call(fail=True), OSError)
    clock.advance(30.0)
    gate: dict[str, Any] = {}

    def kill_during_the_probe() -> str:
        own_redis.stop()
        gate["ran"] = True
        return "probe"

    async def akill() -> str:
        return kill_during_the_probe()

    if replica.loop is None:
        assert replica.breaker.call(kill_during_the_probe) == "probe"  # the verdict is lost
    else:
        assert replica.loop.run_until_complete(replica.breaker.acall(akill)) == "probe"
    assert gate == {"ran": True}
    assert len(replica.events.of(BackendFailed)) == 1
    own_redis.start()
    clock.advance(PROBE)
    # The restarted Redis is empty; a durable one would have expired the silent probe
    # after half_open_max_wait (counted as failed): see the fleet tests.
    assert replica.call() == "ran"


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_changes_by_hand_raise_backend_error_in_every_mode(own_redis, make, flavour):
    clock = FakeClock()
    replica = make(flavour, "local", clock)
    assert replica.call() == "ran"
    own_redis.stop()
    for method in ("force_open", "reset", "flush"):
        with pytest.raises(BackendError):
            replica.run(method)


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("mode", MODES)
def test_a_hung_redis_costs_at_most_the_timeout(own_redis, make, flavour, mode):
    clock = FakeClock()
    replica = make(flavour, mode, clock)
    assert replica.call() == "ran"
    assert own_redis.process is not None
    pid = own_redis.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        clock.advance(1.0)
        answer = replica.call()  # times out after TIMEOUT (checked in call)
        check_outage_answer(mode, answer)
        for _ in range(3):
            check_outage_answer(mode, replica.call())  # not called: probe interval
    finally:
        os.kill(pid, signal.SIGCONT)
    clock.advance(PROBE)
    assert replica.call() == "ran"
    assert len(replica.events.of(BackendRecovered)) == 1


def test_a_redis_that_never_started_is_an_outage_from_the_first_call():
    clock = FakeClock()
    store = RedisStore("redis://127.0.0.1:9/0", timeout=TIMEOUT, clock=clock)
    denying = SharedCircuitBreaker(name="nowhere", store=store, on_backend_error="deny")
    with pytest.raises(rs.CircuitOpenError) as refused:
        denying.call(lambda: 1)
    assert refused.value.reason == "backend_unavailable"
    assert refused.value.retry_after == PROBE_DEFAULT
    raising = SharedCircuitBreaker(name="nowhere", store=store)  # the store's mode: raise
    with pytest.raises(BackendError) as raised:
        raising.call(lambda: 1)  # Redis is not called again within the probe interval
    assert "127.0.0.1:9" in str(raised.value)
    assert "not called" in str(raised.value)


# -- Redis Cluster: a failover keeps the shared state -------------------------------------------


def _is_master(node: RedisServer) -> bool:
    return node.cli("ROLE").splitlines()[0] == "master"


def _replica_of(cluster: Any, master: RedisServer) -> RedisServer:
    wanted = master.cli("CLUSTER", "MYID")
    for node in cluster.nodes:
        if node.process is None or node is master:
            continue
        for line in node.cli("CLUSTER", "NODES").splitlines():
            parts = line.split()
            if "myself" in parts[2] and "slave" in parts[2] and parts[3] == wanted:
                return node
    raise LookupError(f"no replica of {master.port}")


def _redundant(cluster: Any) -> bool:
    nodes = [node for node in cluster.nodes if node.process is not None]
    if not all("cluster_state:ok" in node.cli("CLUSTER", "INFO") for node in nodes):
        return False
    masters = [node for node in nodes if _is_master(node)]
    return all("state=online" in node.cli("INFO", "replication") for node in masters)


@pytest.fixture
def cluster(redis_cluster: Any) -> Iterator[Any]:
    """The session's cluster, fully redundant before and after the test."""
    wait_for(lambda: _redundant(redis_cluster), 30, "every master to have an online replica")
    yield redis_cluster
    wait_for(lambda: _redundant(redis_cluster), 30, "every master to have an online replica")


def test_a_cluster_failover_keeps_the_shared_state(cluster):
    import redis as redis_py

    clock = FakeClock(100.0)
    store = RedisStore(
        cluster.url, timeout=TIMEOUT, probe_interval=PROBE, clock=clock, prefix=unique_prefix()
    )
    breaker = SharedCircuitBreaker(
        name="failover", store=store, window=rs.CountWindow(4), minimum_calls=2,
        open_for=30.0, flush_interval=0,
    )  # fmt: skip
    try:
        for _ in range(2):
            with pytest.raises(OSError):
                breaker.call(_down)
        master = cluster.master_of_slot(redis_py.cluster.key_slot(breaker.key.encode()))
        replica = _replica_of(cluster, master)
        assert master.cli("WAIT", "1", "2000") == "1"  # the opening reached the replica
        deadline = time.monotonic() + 30
        while not (_is_master(replica) and not _is_master(master)):
            assert time.monotonic() < deadline, "the replica was not promoted"
            if not _is_master(replica):  # asked again if the masters refused their votes
                assert replica.cli("CLUSTER", "FAILOVER") == "OK"
            with contextlib.suppress(AssertionError):
                wait_for(lambda: _is_master(replica) and not _is_master(master), 4, "the failover")
        cluster.failed_over()  # a later test that kills a master waits this election out
        stats = None
        deadline = time.monotonic() + 45
        while stats is None:
            try:
                stats = breaker.flush()  # MOVED is followed once the cluster says so
            except BackendError:
                assert time.monotonic() < deadline, "the cluster did not answer again"
                time.sleep(0.05)  # the failover happens in real time on the servers
        assert (stats.state, stats.generation, stats.failed_calls) == (
            rs.CircuitState.OPEN, 1, 2,
        )  # fmt: skip
        with pytest.raises(rs.CircuitOpenError) as refused:
            breaker.call(lambda: 1)
        assert refused.value.retry_after == 30.0
    finally:
        store.close()


def _down() -> None:
    raise OSError("dependency down")
