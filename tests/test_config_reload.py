"""Reloading a registry: what keeps its state, what is rejected, polling, the watcher
thread, and calls running while it happens."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import textwrap
import threading
from pathlib import Path

import pytest

import resilient as rs
from resilient.config import Registry, ReloadResult, load_config
from resilient.testing import FakeClock

BASE = """
policies:
  payments:
    retry: {attempts: 2, backoff: {initial: 0, maximum: 0}, retry_on: [ValueError]}
    circuit_breaker: {window: 2, minimum_calls: 2, open_for: 60s}
    rate_limit: {rate: 3/minute, max_wait: 0}
  search:
    circuit_breaker: {window: 2, minimum_calls: 2}
    bulkhead: 2
"""


_versions = itertools.count(1)


def write(path: Path, text: str) -> None:
    """Replace the file at once (as deployment tools do), with a modification time of its
    own whatever the filesystem's resolution."""
    new = path.with_name(path.name + ".new")
    new.write_text(textwrap.dedent(text))
    stamp = (1_700_000_000 + next(_versions)) * 1_000_000_000
    os.utime(new, ns=(stamp, stamp))
    os.replace(new, path)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policies.yaml"
    write(path, BASE)
    return path


def _fail() -> None:
    raise ValueError("down")


def open_breaker(registry: Registry, name: str) -> rs.CircuitBreaker:
    breaker = next(p for p in registry[name].policies if isinstance(p, rs.CircuitBreaker))
    for _ in range(2):
        with pytest.raises(ValueError):
            breaker.call(_fail)
    assert breaker.state is rs.CircuitState.OPEN
    return breaker


def test_unchanged_policies_keep_their_objects_and_state(policy_file):
    registry = load_config(policy_file, clock=FakeClock())
    search = registry["search"]
    breaker = open_breaker(registry, "search")
    write(policy_file, BASE.replace("3/minute", "4/minute"))
    result = registry.reload()
    assert result == ReloadResult(changed=("payments",), unchanged=("search",))
    assert registry["search"] is search
    assert breaker.state is rs.CircuitState.OPEN


def test_a_changed_policy_keeps_every_step_whose_settings_did_not_change(policy_file):
    registry = load_config(policy_file, clock=FakeClock())
    old = registry["payments"]
    breaker = open_breaker(registry, "payments")
    write(policy_file, BASE.replace("attempts: 2", "attempts: 3"))
    assert registry.reload().changed == ("payments",)
    new = registry["payments"]
    assert new is not old
    assert new.policies[2] is breaker  # rate_limit, retry, circuit_breaker
    assert new.policies[0] is old.policies[0]
    assert new.policies[1] is not old.policies[1]
    assert new.policies[1].config.attempts == 3
    with pytest.raises(rs.CircuitOpenError):
        new.call(lambda: "never runs")


def test_a_limiter_keeps_its_counts_when_its_rate_does_not_change(policy_file):
    registry = load_config(policy_file, clock=FakeClock())
    limiter = registry["payments"].policies[0]
    for _ in range(3):
        assert limiter.try_acquire().allowed
    assert not limiter.try_acquire().allowed
    write(policy_file, BASE.replace("max_wait: 0", "max_wait: 1ms"))
    registry.reload()
    new = registry["payments"].policies[0]
    assert new is not limiter
    assert new.config.max_wait == 0.001
    assert not new.try_acquire().allowed  # the three calls still count
    write(policy_file, BASE.replace("3/minute", "5/minute"))
    registry.reload()
    assert registry["payments"].policies[0].try_acquire().allowed  # a new rate starts afresh


def test_added_and_removed_policies(policy_file):
    registry = load_config(policy_file)
    write(policy_file, BASE.replace("  search:", "  lookup:"))
    result = registry.reload()
    assert (result.added, result.removed) == (("lookup",), ("search",))
    assert bool(result)
    assert list(registry) == ["payments", "lookup"]
    assert not registry.reload()  # nothing changed the second time


def test_an_invalid_file_is_rejected_whole(policy_file):
    registry = load_config(policy_file)
    before = {name: registry[name] for name in registry}
    document = registry.document
    write(policy_file, BASE.replace("3/minute", "3/fortnight").replace("  search:", "  other:"))
    with pytest.raises(rs.ConfigError, match=r"policies.yaml:6: policies.payments.rate_limit"):
        registry.reload()
    assert {name: registry[name] for name in registry} == before
    assert registry.document is document


def test_reload_from_another_source_and_back_on_failure(policy_file):
    registry = load_config(policy_file)
    with pytest.raises(rs.ConfigError):
        registry.reload("policies: {x: {retry: 0}}", "yaml")
    assert registry.source == str(policy_file)
    registry.reload({"policies": {"x": {}}})
    assert list(registry) == ["x"]
    assert registry.source is None


def test_backends_are_kept_when_unchanged(tmp_path):
    path = tmp_path / "p.yaml"
    text = """
        backends: {mem: {url: "memory://"}}
        policies:
          a: {rate_limit: {rate: 1/s, backend: mem}}
          b: {rate_limit: {rate: 2/s, backend: mem}, retry: ATTEMPTS}
        """
    write(path, text.replace("ATTEMPTS", "2"))
    registry = load_config(path)
    store = registry["a"].policies[0].store
    write(path, text.replace("ATTEMPTS", "3"))
    registry.reload()
    assert registry["b"].policies[0].store is store
    write(path, text.replace("ATTEMPTS", "3").replace('"memory://"', '"memory://?max_keys=5"'))
    registry.reload()
    assert registry["a"].policies[0].store is not store


def test_the_environment_is_read_again(tmp_path):
    env = {"ATTEMPTS": "2"}
    registry = load_config('{"policies": {"a": {"retry": "${ATTEMPTS}"}}}', env=env)
    env["ATTEMPTS"] = "5"
    assert registry.reload().changed == ("a",)
    assert registry["a"].policies[0].config.attempts == 5


def test_poll_reloads_only_when_the_content_changes(policy_file):
    registry = load_config(policy_file)
    assert registry.poll() is None
    os.utime(policy_file, ns=(1, 1))  # touched, same content
    assert registry.poll() is None
    write(policy_file, BASE.replace("bulkhead: 2", "bulkhead: 3"))
    assert registry.poll() == ReloadResult(changed=("search",), unchanged=("payments",))
    assert registry.poll() is None


def test_poll_reports_a_bad_version_once(policy_file):
    registry = load_config(policy_file)
    write(policy_file, BASE.replace("bulkhead: 2", "bulkhead: 0"))
    with pytest.raises(rs.ConfigError, match="max_concurrent"):
        registry.poll()
    os.utime(policy_file, ns=(5, 5))
    assert registry.poll() is None  # the same bad content is not reported again
    write(policy_file, BASE.replace("bulkhead: 2", "bulkhead: 4"))
    assert registry.poll() is not None
    assert registry.document.policies["search"].bulkhead.max_concurrent == 4


def test_a_registry_without_a_file_has_nothing_to_poll_or_watch():
    registry = load_config("policies: {a: {}}", "yaml")
    assert registry.poll() is None
    with pytest.raises(rs.ConfigError, match="a registry loaded from a file"):
        registry.watch()


def test_the_watcher_thread_reloads_and_reports_errors(policy_file, caplog):
    registry = load_config(policy_file)
    reloaded: list[ReloadResult] = []
    errors: list[rs.ConfigError] = []
    event = threading.Event()

    def on_reload(result: ReloadResult) -> None:
        reloaded.append(result)
        event.set()

    def on_error(error: rs.ConfigError) -> None:
        errors.append(error)
        event.set()

    with registry.watch(0.001, on_reload=on_reload, on_error=on_error) as watcher:
        # (the thread reads a change once the file stayed the same for one interval)
        assert watcher.running
        write(policy_file, BASE.replace("bulkhead: 2", "bulkhead: 0"))
        assert event.wait(10)
        event.clear()
        write(policy_file, BASE.replace("bulkhead: 2", "bulkhead: 5"))
        assert event.wait(10)
    assert not watcher.running
    assert [e.errors[0].path for e in errors] == ["policies.search.bulkhead.max_concurrent"]
    assert reloaded == [ReloadResult(changed=("search",), unchanged=("payments",))]
    assert "rejected the new version" in caplog.text


def test_watcher_check_survives_raising_callbacks(policy_file, caplog):
    registry = load_config(policy_file)
    watcher = registry.watch(3600, on_reload=lambda result: 1 / 0)
    try:
        write(policy_file, BASE.replace("bulkhead: 2", "bulkhead: 6"))
        with caplog.at_level(logging.ERROR, "resilient.config"):
            watcher.check()  # one poll, on this thread
        assert "a config watcher callback raised" in caplog.text
        assert registry.document.policies["search"].bulkhead.max_concurrent == 6
    finally:
        watcher.stop()


def test_lint_warnings_are_logged_once(policy_file, caplog):
    write(policy_file, BASE + "  extra: {retry: 2}\n")
    with caplog.at_level(logging.WARNING, "resilient.config"):
        registry = load_config(policy_file)
        registry.reload()
    lines = [r.getMessage() for r in caplog.records if r.name == "resilient.config"]
    assert len(lines) == 1
    assert lines == [str(w) for w in registry.warnings]
    assert "[retry-without-budget]" in lines[0]


def test_calls_keep_running_while_other_threads_reload(policy_file):
    registry = load_config(policy_file)
    versions = [BASE.replace("bulkhead: 2", f"bulkhead: {n}") for n in (50, 51)]
    registry.reload(versions[1], "yaml")
    stop = threading.Event()
    failures: list[BaseException] = []
    counts = [0] * 8

    def caller(index: int) -> None:
        while not stop.is_set():
            try:
                assert registry["search"].call(lambda: 7) == 7
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)
                return
            counts[index] += 1

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(counts))]
    for thread in threads:
        thread.start()
    try:
        for n in range(60):
            registry.reload(versions[n % 2], "yaml")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert all(counts)


async def test_async_calls_during_reload(policy_file):
    registry = load_config(policy_file)
    registry.reload(BASE.replace("bulkhead: 2", "bulkhead: 10"), "yaml")
    search = registry.live("search")

    async def work() -> int:
        await asyncio.sleep(0)
        return 1

    async def caller() -> int:
        total = 0
        for _ in range(50):
            total += await search.acall(work)
        return total

    tasks = [asyncio.create_task(caller()) for _ in range(10)]
    for n in range(20):
        registry.reload(BASE.replace("bulkhead: 2", f"bulkhead: {10 + n}"), "yaml")
        await asyncio.sleep(0)
    assert await asyncio.gather(*tasks) == [50] * 10
