"""Tiny timing harness shared by the benchmark modules.

Each ``bench_*.py`` module exposes ``NAME`` (a section id) and
``run(quick: bool) -> list[Table]``. ``python -m benchmarks.run`` runs them
side by side and rewrites that module's section of ``docs/performance.md``.
Timings are best-of-N medians of batches, in nanoseconds per call.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        out = [f"### {self.title}", ""]
        out.append("| " + " | ".join(self.columns) + " |")
        out.append("|" + "|".join("---" for _ in self.columns) + "|")
        out.extend("| " + " | ".join(row) + " |" for row in self.rows)
        if self.notes:
            out.append("")
            out.extend(f"- {n}" for n in self.notes)
        out.append("")
        return "\n".join(out)


def _batch(quick: bool) -> tuple[int, int]:
    return (2_000, 5) if quick else (20_000, 9)


def measure(fn: Callable[[], Any], *, quick: bool = False, number: int | None = None) -> float:
    """Nanoseconds per call of ``fn()``: the median of several timed batches."""
    n, repeats = _batch(quick)
    n = number or n
    for _ in range(min(n, 500)):
        fn()
    samples = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter_ns()
            for _ in range(n):
                fn()
            samples.append((time.perf_counter_ns() - start) / n)
    finally:
        if gc_was:
            gc.enable()
    return statistics.median(samples)


def ameasure(
    fn: Callable[[], Awaitable[Any]], *, quick: bool = False, number: int | None = None
) -> float:
    """Nanoseconds per awaited call of ``fn()`` inside one running event loop."""
    n, repeats = _batch(quick)
    n = number or n

    async def main() -> float:
        for _ in range(min(n, 500)):
            await fn()
        samples = []
        for _ in range(repeats):
            start = time.perf_counter_ns()
            for _ in range(n):
                await fn()
            samples.append((time.perf_counter_ns() - start) / n)
        return statistics.median(samples)

    gc_was = gc.isenabled()
    gc.disable()
    try:
        return asyncio.run(main())
    finally:
        if gc_was:
            gc.enable()


def ns(value: float) -> str:
    return f"{value:,.0f}"


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.3f}x" if theirs > 0 else "n/a"


def verdict(ours: float, theirs: float, target: float) -> str:
    """``"0.12x (target <= 0.2x: met)"``."""
    r = ours / theirs if theirs > 0 else float("inf")
    ok = "met" if r <= target else "NOT met"
    return f"{r:.3f}x (target <= {target}x: {ok})"
