"""Bulkhead: at most N calls in flight, an optional queue, and rejections beyond it."""

from __future__ import annotations

import asyncio

import resilient as rs

# --8<-- [start:example]
reports = rs.Bulkhead(max_concurrent=2, max_queued=1, max_wait="5s", name="reports")


async def render(release: asyncio.Event) -> str:
    await release.wait()
    return "pdf"


async def main() -> None:
    release = asyncio.Event()
    running = [asyncio.create_task(reports.acall(render, release)) for _ in range(3)]
    await asyncio.sleep(0)  # two run, one waits in the queue
    stats = reports.stats()
    assert (stats.in_flight, stats.queued) == (2, 1)
    try:
        await reports.acall(render, release)  # slots and queue are full
    except rs.BulkheadFullError as exc:
        print(exc.reason)  # bulkhead_full
    release.set()
    assert await asyncio.gather(*running) == ["pdf", "pdf", "pdf"]


asyncio.run(main())
# --8<-- [end:example]

if __name__ == "__main__":
    stats = reports.stats()
    assert (stats.in_flight, stats.queued, stats.admitted, stats.rejected) == (0, 0, 3, 1)
