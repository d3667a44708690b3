"""Servers the benchmarks start for themselves, on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A private redis-server for one benchmark; yields its URL, stops it at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("this benchmark needs redis-server on PATH")
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", workdir]  # fmt: skip
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            client = redis.Redis.from_url(url)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)  # waiting for the server to listen
            client.close()
            yield url
        finally:
            process.terminate()
            process.wait(10)


@contextlib.contextmanager
def serving_process(serve: str, env: dict[str, str]) -> Iterator[tuple[int, int]]:
    """Run *serve* (Python code given the listening socket's fd as ``sys.argv[1]``) in a
    child process with *env* added, on a free loopback port; yields ``(port, pid)``.

    The socket is made here and handed down (TCP, so TCP_NODELAY applies as usual)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    child_env = {**os.environ, **env}
    child_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), child_env.get("PYTHONPATH", "")])
    process = subprocess.Popen(
        [sys.executable, "-c", serve, str(sock.fileno())],
        pass_fds=[sock.fileno()],
        env=child_env,
        cwd=ROOT,
    )
    try:
        yield port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        sock.close()
