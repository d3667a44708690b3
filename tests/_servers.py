"""Real servers for the tests: redis-server processes and a small Redis Cluster,
started on free loopback ports in a temporary directory and stopped at the end.

A missing ``redis-server`` fails the run when ``CI`` is set (CI installs it);
elsewhere the tests that need it are skipped with a clear reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

HOST = "127.0.0.1"


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(*, cluster: bool = False) -> int:
    """A free loopback port. A cluster node also listens on port + 10000 (its bus),
    so for one both must be free and the port at most 55535."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if not cluster or (port <= 55535 and _bindable(port + 10000)):
            return port
    raise RuntimeError("no free loopback port found for a Redis Cluster node")


def require_redis() -> str:
    binary = shutil.which("redis-server")
    if binary is None or shutil.which("redis-cli") is None:
        message = "redis-server/redis-cli not installed (scripts/test installs them)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return binary


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)  # polling a real server's readiness, not faking time
    raise RuntimeError(f"timed out waiting for {what}")


def _cli(port: int, *args: str) -> str:
    out = subprocess.run(
        ["redis-cli", "-h", HOST, "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return out.stdout.strip()


class RedisServer:
    """One redis-server process; can be stopped and started again on the same port."""

    def __init__(self, workdir: Path, port: int | None = None, *extra: str) -> None:
        self.binary = require_redis()
        self.port = port or free_port(cluster="--cluster-enabled" in extra)
        self.workdir = workdir
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--protected-mode", "no",
            *self.extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _wait(self.ping, 10, f"redis-server on port {self.port}")
        return self

    def ping(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} exited")
        return _cli(self.port, "PING") == "PONG"

    def cli(self, *args: str) -> str:
        return _cli(self.port, *args)

    def stop(self) -> None:
        """Kill the server (an abrupt crash, as in an outage)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


ELECTION_MEMORY = 5.5
"""Seconds a cluster node may act on the votes of its last election: it counts them
until twice the auth timeout (here the 2 s floor) has passed since the election began,
and an automatic election begins up to about 1.5 s after the master failed. A replica
whose master fails sooner than that after the replica last won an election can promote
itself on those stale votes, at its old config epoch, which the other nodes then ignore
for good (seen with Redis 7.0): a test that kills a master waits this long after the
cluster's last failover first."""


class RedisCluster:
    """A Redis Cluster of ``masters`` masters (each with ``replicas`` replicas)."""

    def __init__(self, workdir: Path, masters: int = 3, replicas: int = 1) -> None:
        self.nodes = [
            RedisServer(workdir / f"node{i}", None, *self._node_args(i))
            for i in range(masters * (1 + replicas))
        ]
        self.replicas = replicas
        self.failed_over_at = float("-inf")

    def failed_over(self) -> None:
        """Record that a failover just happened (see :data:`ELECTION_MEMORY`)."""
        self.failed_over_at = time.monotonic()

    def wait_out_last_election(self) -> None:
        """Before killing a master: let the cluster's last election expire on every node."""
        left = self.failed_over_at + ELECTION_MEMORY - time.monotonic()
        if left > 0:
            time.sleep(left)  # a real server's timer, not the code under test's

    @staticmethod
    def _node_args(i: int) -> list[str]:
        return [
            "--cluster-enabled", "yes",
            "--cluster-config-file", f"nodes-{i}.conf",
            "--cluster-node-timeout", "1000",
            "--cluster-replica-validity-factor", "0",
        ]  # fmt: skip

    @property
    def url(self) -> str:
        """Every node as a startup node, so a client (re)starting while one is down, as
        clients do after a failover, still finds the cluster."""
        hosts = ",".join(f"{HOST}:{node.port}" for node in self.nodes)
        return f"redis+cluster://{hosts}"

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(HOST, node.port) for node in self.nodes]

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        addresses = [f"{HOST}:{node.port}" for node in self.nodes]
        out = subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses,
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"cluster create failed: {out.stdout}\n{out.stderr}")
        _wait(self.healthy, 30, "cluster_state:ok")
        return self

    def healthy(self) -> bool:
        return all(
            "cluster_state:ok" in node.cli("CLUSTER", "INFO")
            for node in self.nodes
            if node.process is not None
        )

    def master_of_slot(self, slot: int) -> RedisServer:
        for node in self.nodes:
            if node.process is None:
                continue
            for line in node.cli("CLUSTER", "NODES").splitlines():
                parts = line.split()
                if "myself" in parts[2] and "master" in parts[2]:
                    for span in parts[8:]:
                        if "-" in span and not span.startswith("["):
                            low, high = (int(x) for x in span.split("-"))
                            if low <= slot <= high:
                                return node
                        elif span.isdigit() and int(span) == slot:
                            return node
        raise LookupError(slot)

    def stop(self) -> None:
        for node in self.nodes:
            with suppress(Exception):
                node.stop()


def running_cluster(workdir: Path) -> Iterator[RedisCluster]:
    cluster = RedisCluster(workdir)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
