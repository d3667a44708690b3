"""Faults on real servers: Redis killed and restarted, hung, flushed of its scripts,
turned read-only, and a Redis Cluster failing over.

For each ``on_backend_error`` mode, sync and async: every call gets what the mode
documents (and nothing but ``BackendError`` in ``"raise"`` mode), no call outlives
the socket timeout, Redis is left alone for the probe interval, and once it is
back the counts it kept are exact (a durable server keeps them across the kill:
none lost, none counted twice). Time is a fake clock (the store decides on it and
times the probe interval with it); only the servers are real.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from _redis_support import Driver, command_log, unique_prefix, wait_for
from _servers import RedisServer

import resilient as rs
from resilient import BackendError
from resilient.backends import Limit
from resilient.backends.redis import AsyncRedisStore, RedisStore
from resilient.observability import BackendFailed, BackendRecovered
from resilient.testing import FakeClock, RecordingListener

pytestmark = pytest.mark.redis

FIVE = (Limit(algorithm="fixed_window", amount=5, period=3600.0),)
MODES = ["raise", "allow", "deny", "local"]
TIMEOUT = 0.2
SLACK = 1.0  # seconds a call may take beyond the socket timeout on a loaded machine


@pytest.fixture
def durable(tmp_path: Any) -> Iterator[RedisServer]:
    """A private server that keeps every write across a crash (fsync'd AOF)."""
    server = RedisServer(
        tmp_path / "durable", None, "--appendonly", "yes", "--appendfsync", "always"
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` (or the exception it raised) and how long it took."""
    start = time.monotonic()
    try:
        result = fn(*args)
    except Exception as exc:
        result = exc
    return result, time.monotonic() - start


class Limiter:
    """A FixedWindow on a Redis store, driven through try_acquire / atry_acquire."""

    def __init__(self, url: str, flavour: str, mode: str, clock: FakeClock) -> None:
        cls = AsyncRedisStore if flavour == "async" else RedisStore
        self.store = cls(url, on_backend_error=mode, timeout=TIMEOUT, clock=clock)
        self.events = RecordingListener()
        self.policy = rs.FixedWindow(
            "5/hour", store=self.store, clock=clock, name="faults", listeners=[self.events]
        )
        self.driver = Driver(self.store, flavour)

    def decide(self) -> Any:
        if self.driver.loop is None:
            return self.policy.try_acquire()
        return self.driver._run(self.policy.atry_acquire())

    def close(self) -> None:
        self.driver.close()


def check_outage_answer(mode: str, answer: Any, took: float) -> bool | None:
    """Whether the call was admitted during an outage (None: it raised BackendError)."""
    assert took < TIMEOUT + SLACK, f"a call took {took:.3f}s"
    if mode == "raise":
        assert isinstance(answer, BackendError), answer
        return None
    assert isinstance(answer, rs.Decision), answer
    if mode == "allow":
        assert answer.allowed
    elif mode == "deny":
        assert not answer.allowed
        assert answer.retry_after > 0
    return answer.allowed


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("mode", MODES)
def test_redis_killed_and_restarted(durable, flavour, mode):
    clock = FakeClock(100.0)
    limiter = Limiter(durable.url, flavour, mode, clock)
    try:
        assert [bool(limiter.decide()) for _ in range(3)] == [True] * 3
        durable.stop()
        admitted = []
        for _ in range(7):
            answer, took = timed(limiter.decide)
            admitted.append(check_outage_answer(mode, answer, took))
        if mode == "local":  # the in-memory twin enforces the limit on its own
            assert admitted == [True] * 5 + [False] * 2
        assert not limiter.store.health.up
        (failed,) = limiter.events.of(BackendFailed)
        assert failed.mode == mode
        assert failed.policy == "faults"
        assert "127.0.0.1" in failed.backend
        assert isinstance(failed.error, BackendError)
        assert isinstance(failed.error.__cause__, redis.ConnectionError)

        durable.start()
        with command_log() as log:  # within the probe interval Redis is not called
            answer, took = timed(limiter.decide)
            check_outage_answer(mode, answer, took)
        assert log.names == []
        clock.advance(limiter.store.health.probe_interval)
        back = [bool(limiter.decide()) for _ in range(3)]
        assert back == [True, True, False]  # 3 kept across the crash + 2 = 5: exact
        assert limiter.store.health.up
        assert len(limiter.events.of(BackendRecovered)) == 1
        assert len(limiter.events.of(BackendFailed)) == 1
    finally:
        limiter.close()


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("mode", ["raise", "local"])
def test_a_hung_redis_costs_a_caller_one_timeout(durable, flavour, mode):
    clock = FakeClock(100.0)
    limiter = Limiter(durable.url, flavour, mode, clock)
    assert durable.process is not None
    pid = durable.process.pid
    try:
        assert limiter.decide()
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(3):
                answer, took = timed(limiter.decide)
                check_outage_answer(mode, answer, took)
                clock.advance(limiter.store.health.probe_interval)  # each call probes
            if mode == "raise":
                assert isinstance(answer.__cause__, redis.TimeoutError)
        finally:
            os.kill(pid, signal.SIGCONT)
        clock.advance(limiter.store.health.probe_interval)
        wait_for(lambda: bool(limiter.decide()) or True, 5, "an answer")
        assert limiter.store.health.up
    finally:
        limiter.close()


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_script_flush_mid_run_loses_and_doubles_nothing(redis_url, flavour):
    store = (AsyncRedisStore if flavour == "async" else RedisStore)(redis_url)
    driver = Driver(store, flavour)
    limits = (Limit(algorithm="sliding_log", amount=20, period=3600.0),)
    admitted = 0
    for step in range(25):
        if step in (5, 12):
            redis.Redis.from_url(redis_url).script_flush()
        admitted += bool(driver.acquire("k", limits))
    assert admitted == 20
    assert store.health.up
    driver.close()


@pytest.mark.parametrize("mode", ["raise", "deny", "local"])
def test_a_read_only_replica_is_an_outage_until_it_is_promoted(own_redis, redis_server, mode):
    clock = FakeClock(100.0)
    limiter = Limiter(own_redis.url, "sync", mode, clock)
    try:
        assert limiter.decide()
        own_redis.cli("REPLICAOF", "127.0.0.1", str(redis_server.port))
        wait_for(lambda: own_redis.cli("ROLE").startswith("slave"), 10, "the replica role")
        answer, took = timed(limiter.decide)
        check_outage_answer(mode, answer, took)
        cause = limiter.events.of(BackendFailed)[0].error.__cause__
        assert isinstance(cause, redis.ReadOnlyError)
        own_redis.cli("REPLICAOF", "NO", "ONE")
        clock.advance(limiter.store.health.probe_interval)
        assert limiter.decide()
        assert limiter.store.health.up
    finally:
        limiter.close()


# -- Redis Cluster -----------------------------------------------------------------------------


def node_id(node: RedisServer) -> str:
    return node.cli("CLUSTER", "MYID")


def replica_of(cluster: Any, master: RedisServer) -> RedisServer:
    wanted = node_id(master)
    for node in cluster.nodes:
        if node.process is None or node is master:
            continue
        for line in node.cli("CLUSTER", "NODES").splitlines():
            parts = line.split()
            if "myself" in parts[2] and "slave" in parts[2] and parts[3] == wanted:
                return node
    raise LookupError(f"no replica of {master.port}")


def is_master(node: RedisServer) -> bool:
    return node.cli("ROLE").splitlines()[0] == "master"


def fail_over(cluster: Any, replica: RedisServer, master: RedisServer) -> None:
    """``CLUSTER FAILOVER`` on *replica*, asked again if the masters refused their votes
    (they vote once per master per two node timeouts), within a bounded wait."""
    deadline = time.monotonic() + 30
    try:
        while not (is_master(replica) and not is_master(master)):
            assert time.monotonic() < deadline, "the replica was not promoted"
            if not is_master(replica):  # not promoted by an earlier request meanwhile
                assert replica.cli("CLUSTER", "FAILOVER") == "OK"
            with contextlib.suppress(AssertionError):
                wait_for(lambda: is_master(replica) and not is_master(master), 4, "the failover")
    finally:
        cluster.failed_over()


def healthy(cluster: Any) -> bool:
    return all(
        "cluster_state:ok" in node.cli("CLUSTER", "INFO")
        for node in cluster.nodes
        if node.process is not None
    )


def slot_owners(node: RedisServer) -> frozenset[tuple[str, str, tuple[str, ...]]]:
    """*node*'s view of who serves which slots: (node id, config epoch, slot ranges)."""
    owners = set()
    for line in node.cli("CLUSTER", "NODES").splitlines():
        parts = line.split()
        if len(parts) > 8 and "master" in parts[2]:
            owners.add((parts[0], parts[6], tuple(parts[8:])))
    return frozenset(owners)


def agreed(cluster: Any) -> bool:
    """Every running node has the same view of which node serves which slots, at which
    config epoch (a failover is over once the winner's claim reached every node)."""
    views = {slot_owners(node) for node in cluster.nodes if node.process is not None}
    return len(views) == 1


def redundant(cluster: Any) -> bool:
    """Healthy, every node agrees on the slots, and every master has a replica whose
    link is up."""
    if not healthy(cluster) or not agreed(cluster):
        return False
    masters = [node for node in cluster.nodes if node.process is not None and is_master(node)]
    return all("state=online" in node.cli("INFO", "replication") for node in masters)


@pytest.fixture
def cluster(redis_cluster: Any) -> Iterator[Any]:
    """The session's cluster, fully redundant before and after the test."""
    wait_for(lambda: redundant(redis_cluster), 30, "every master to have an online replica")
    yield redis_cluster
    for node in redis_cluster.nodes:
        if node.process is None:
            node.start()  # a killed master rejoins as a replica
    wait_for(lambda: redundant(redis_cluster), 30, "every master to have an online replica")


def slot_of(store: Any, key: str) -> int:
    name = store._keys(key, store._plan(FIVE))[0]
    return int(redis.cluster.key_slot(name.encode()))


def until_answered(limiter: Limiter, clock: FakeClock, mode: str, limit: float = 45.0) -> Any:
    """Decide again and again (every call bounded, every failure a BackendError or the
    mode's answer) until Redis answers; return its first answer."""
    deadline = time.monotonic() + limit
    errors = []
    while time.monotonic() < deadline:
        answer, took = timed(limiter.decide)
        if limiter.store.health.up and isinstance(answer, rs.Decision):
            return answer
        check_outage_answer(mode, answer, took)
        last = limiter.store.health.last_error
        errors.append(repr(last.__cause__ if last is not None else answer))
        clock.advance(limiter.store.health.probe_interval)
        time.sleep(0.05)  # the failover happens in real time on the servers
    raise AssertionError(f"the cluster did not answer again: {sorted(set(errors))}")


def test_cluster_master_killed_and_replica_promoted(cluster):
    clock = FakeClock(100.0)
    url = f"{cluster.url}?prefix={unique_prefix('kill')}"
    limiter = Limiter(url, "async", "local", clock)
    try:
        assert [bool(limiter.decide()) for _ in range(3)] == [True] * 3
        master = cluster.master_of_slot(slot_of(limiter.store, "faults"))
        replica = replica_of(cluster, master)
        assert master.cli("WAIT", "1", "2000") == "1"  # the 3 calls reached the replica
        cluster.wait_out_last_election()
        master.stop()
        answer, took = timed(limiter.decide)
        assert check_outage_answer("local", answer, took)  # decided in memory meanwhile
        wait_for(lambda: is_master(replica), 20, "the replica's promotion")
        cluster.failed_over()
        first = until_answered(limiter, clock, "local")
        rest = [bool(limiter.decide()) for _ in range(2)]
        assert [bool(first), *rest] == [True, True, False]
        assert len(limiter.events.of(BackendRecovered)) == 1
    finally:
        limiter.close()


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_cluster_failover_keeps_every_count(cluster, flavour):
    clock = FakeClock(100.0)
    url = f"{cluster.url}?prefix={unique_prefix('fo')}"
    limiter = Limiter(url, flavour, "raise", clock)
    try:
        assert [bool(limiter.decide()) for _ in range(3)] == [True] * 3
        master = cluster.master_of_slot(slot_of(limiter.store, "faults"))
        replica = replica_of(cluster, master)
        fail_over(cluster, replica, master)
        wait_for(lambda: healthy(cluster), 15, "a healthy cluster")
        first = until_answered(limiter, clock, "raise")  # MOVED is followed
        rest = [bool(limiter.decide()) for _ in range(2)]
        assert [bool(first), *rest] == [True, True, False]  # 3 + 2: none lost, none doubled
    finally:
        limiter.close()
