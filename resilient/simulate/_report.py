"""Digesting a simulation: the summary, the per-bucket timeline, the terminal view."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ._engine import SimulationResult, percentile

__all__ = [
    "BreakerSummary",
    "Bucket",
    "Summary",
    "intervals",
    "nice_bucket",
    "render_text",
    "summarize",
    "timeline",
]

_NICE = (0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600)
_SEVERITY = {"disabled": 0, "closed": 1, "half_open": 2, "open": 3, "forced_open": 3}
_LETTER = {"closed": "C", "open": "O", "half_open": "H", "forced_open": "F", "disabled": "D"}
_COLOUR = {"C": "32", "O": "31", "H": "33", "F": "35", "D": "90"}
_BLOCKS = " ▁▂▃▄▅▆▇█"
_ASCII = " .:-=+*#%"


@dataclass(frozen=True, slots=True)
class BreakerSummary:
    """One breaker over the run.

    Attributes:
        name: the breaker's name.
        sequence: its states in order, the initial one first.
        opened: how many times it opened.
        time_in_state: seconds spent in each state (over the whole span).
    """

    name: str
    sequence: tuple[str, ...]
    opened: int
    time_in_state: dict[str, float]


@dataclass(frozen=True, slots=True)
class Summary:
    """The totals of a simulation (``as_dict()`` is what ``--json`` prints)."""

    policy: str
    trace: str
    description: str
    seed: int
    span: float
    requests: int
    attempts: int
    amplification: float
    outcomes: dict[str, int]
    failed: dict[str, int]
    rejected: dict[str, int]
    dependency: dict[str, int]
    retries: int
    retry_budget_denied: int
    timeouts: int
    rejections: dict[str, int]
    breakers: tuple[BreakerSummary, ...]
    latency: dict[str, float]
    peak_attempts_per_second: int
    peak_in_flight: int
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["breakers"] = [asdict(b) for b in self.breakers]
        out["notes"] = list(self.notes)
        for breaker in out["breakers"]:
            breaker["sequence"] = list(breaker["sequence"])
        return out


@dataclass(frozen=True, slots=True)
class Bucket:
    """The counts of one slice of time ``[start, end)``.

    Requests are counted when they *end* (``ok``, ``fallback``, ``failed``,
    ``timed_out``, ``rejected``), arrivals when they arrive (``offered``), attempts
    when they start; ``breakers`` holds each breaker's most severe state during the
    slice (open, then half_open, then closed).
    """

    start: float
    end: float
    offered: int = 0
    attempts: int = 0
    ok: int = 0
    fallback: int = 0
    failed: int = 0
    timed_out: int = 0
    rejected: int = 0
    retries: int = 0
    breakers: dict[str, str] = field(default_factory=dict)

    @property
    def width(self) -> float:
        return self.end - self.start


def intervals(result: SimulationResult, name: str, initial: str) -> list[tuple[float, str]]:
    """``(since, state)`` pairs for one breaker, in order."""
    out = [(0.0, initial)]
    for change in result.state_changes:
        if change.breaker == name:
            out.append((change.at, change.new))
    return out


def summarize(result: SimulationResult) -> Summary:
    requests = result.requests
    outcomes = Counter({"ok": 0, "fallback": 0, "failed": 0, "timed_out": 0, "rejected": 0})
    failed: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    for r in requests:
        outcomes[r.outcome] += 1
        if r.outcome == "failed":
            failed[r.detail] += 1
        elif r.outcome == "rejected":
            rejected[r.detail] += 1
    span = result.span
    breakers = []
    for name, initial in result.breakers:
        steps = intervals(result, name, initial)
        time_in: dict[str, float] = {}
        for (since, state), (until, _) in zip(steps, [*steps[1:], (span, "")], strict=True):
            time_in[state] = time_in.get(state, 0.0) + max(until - since, 0.0)
        breakers.append(
            BreakerSummary(
                name=name,
                sequence=tuple(state for _, state in steps),
                opened=sum(1 for _, state in steps[1:] if state == "open"),
                time_in_state={k: round(v, 6) for k, v in time_in.items()},
            )
        )
    latencies = sorted(r.latency for r in requests)
    per_second = Counter(math.floor(a.start) for a in result.attempts)
    return Summary(
        policy=result.policy,
        trace=result.trace.name,
        description=result.trace.description,
        seed=result.seed,
        span=round(span, 6),
        requests=len(requests),
        attempts=len(result.attempts),
        amplification=round(result.amplification, 4),
        outcomes=dict(outcomes),
        failed=dict(failed.most_common()),
        rejected=dict(rejected.most_common()),
        dependency=dict(Counter(a.outcome for a in result.attempts).most_common()),
        retries=len(result.retries),
        retry_budget_denied=sum(1 for r in result.rejections if r.reason == "retry_budget"),
        timeouts=len(result.timeouts),
        rejections=dict(
            Counter(f"{r.policy}: {r.reason}" for r in result.rejections).most_common()
        ),
        breakers=tuple(breakers),
        latency={
            "p50": round(percentile(latencies, 50), 6),
            "p90": round(percentile(latencies, 90), 6),
            "p99": round(percentile(latencies, 99), 6),
            "max": round(latencies[-1], 6) if latencies else 0.0,
        },
        peak_attempts_per_second=max(per_second.values(), default=0),
        peak_in_flight=result.peak_in_flight,
        notes=result.notes,
    )


def nice_bucket(span: float, columns: int = 60) -> float:
    """A round bucket width giving about *columns* buckets over *span* seconds."""
    raw = max(span, 1e-9) / (max(columns, 1) * 1.2)  # up to 20% more columns than asked
    for width in _NICE:
        if width >= raw:
            return float(width)
    return float(math.ceil(raw / 3600.0) * 3600)


def timeline(result: SimulationResult, bucket: float | None = None) -> list[Bucket]:
    span = result.span
    width = nice_bucket(span) if bucket is None else float(bucket)
    if not width > 0:
        raise ValueError(f"bucket must be > 0, got {bucket!r}")
    count = max(math.ceil(span / width - 1e-9), 1)
    if count > 100_000:
        raise ValueError(f"bucket {width}s gives {count} buckets over {span}s; use a wider one")
    rows: list[dict[str, Any]] = [
        {"start": i * width, "end": (i + 1) * width, "breakers": {}} for i in range(count)
    ]

    def slot(t: float) -> dict[str, Any]:
        return rows[min(max(int(t // width), 0), count - 1)]

    def bump(t: float, key: str) -> None:
        row = slot(t)
        row[key] = row.get(key, 0) + 1

    for r in result.requests:
        bump(r.arrival, "offered")
        bump(r.end, r.outcome)
    for a in result.attempts:
        bump(a.start, "attempts")
    for t in result.retries:
        bump(t, "retries")
    for name, initial in result.breakers:
        steps = intervals(result, name, initial)
        for (since, state), (until, _) in zip(steps, [*steps[1:], (span, "")], strict=True):
            first = min(max(int(since // width), 0), count - 1)
            last = min(max(int(until // width), 0), count - 1)
            if until <= since and state != steps[-1][1]:
                last = first  # an instant state still marks its bucket
            for i in range(first, last + 1):
                held = rows[i]["breakers"].get(name)
                if held is None or _SEVERITY.get(state, 0) > _SEVERITY.get(held, 0):
                    rows[i]["breakers"][name] = state
    return [Bucket(**row) for row in rows]


# -- the terminal view ------------------------------------------------------------------------


def _seconds(value: float) -> str:
    if value == 0:
        return "0"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.3g} s"
    if value < 7200:
        return f"{value / 60:.3g} min"
    return f"{value / 3600:.3g} h"


def _axis(seconds: float) -> str:
    if seconds >= 3600 and not seconds % 3600:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and not seconds % 60:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def _spark(values: Sequence[float], top: float, chars: str) -> str:
    out = []
    levels = len(chars) - 1
    for v in values:
        if v <= 0 or top <= 0:
            out.append(chars[0])
        else:
            out.append(chars[max(1, min(levels, math.ceil(v / top * levels)))])
    return "".join(out)


def _phase_strip(phases: Sequence[tuple[float, str]], width: float, n: int, mark: str) -> str:
    """Each phase's label from its first column, cut where the next phase starts."""
    strip = [" "] * n
    ordered = sorted(phases)
    for k, (start, label) in enumerate(ordered):
        first = min(int(start // width), n - 1)
        stop = n if k + 1 == len(ordered) else min(int(ordered[k + 1][0] // width), n)
        text = (mark + label)[: max(stop - first, 0)]
        strip[first : first + len(text)] = text
    return "".join(strip)


def _paint(text: str, code: str, colour: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour and text.strip() else text


def render_text(
    result: SimulationResult,
    *,
    bucket: float | None = None,
    columns: int = 60,
    colour: bool = False,
    unicode: bool = True,
) -> str:
    """The timeline as strips of characters (one per bucket) and the summary under it."""
    span = result.span
    width = nice_bucket(span, columns) if bucket is None else bucket
    buckets = timeline(result, width)
    summary = summarize(result)
    chars = _BLOCKS if unicode else _ASCII
    bar = "│" if unicode else "|"
    dot = "·" if unicode else "-"
    n = len(buckets)
    label_w = 11
    lines = []
    title = f"policy {result.policy!r} {dot} trace {result.trace.name}"
    lines.append(f"{title} (seed {result.seed}): {summary.requests} requests over {_seconds(span)}")
    if result.trace.description:
        lines.append(f"  {result.trace.description}")
    lines.append("")

    # Time axis: a label every ~12 columns.
    axis = [" "] * (n + 12)
    step = max(1, round(n / 5))
    for i in range(0, n + 1, step):
        text = _axis(round(i * width, 6))
        for j, ch in enumerate(text):
            if i + j < len(axis):
                axis[i + j] = ch
    lines.append(" " * (label_w + 1) + "".join(axis).rstrip())

    if result.trace.phases:
        strip = _phase_strip(result.trace.phases, width, n, "▏" if unicode else ">")
        lines.append(f"{'phase':<{label_w}}{bar}{strip}{bar}")

    per_s = [b.width for b in buckets]
    series = [
        ("offered", [b.offered for b in buckets], "0"),
        ("attempts", [b.attempts for b in buckets], "36"),
        ("ok", [b.ok for b in buckets], "32"),
        ("fallback", [b.fallback for b in buckets], "36"),
        ("failed", [b.failed for b in buckets], "31"),
        ("timed out", [b.timed_out for b in buckets], "33"),
        ("rejected", [b.rejected for b in buckets], "35"),
        ("retries", [b.retries for b in buckets], "34"),
    ]
    rates = {
        name: [v / w for v, w in zip(values, per_s, strict=True)] for name, values, _ in series
    }
    top = max((max(v, default=0.0) for v in rates.values()), default=0.0)
    for name, values, code in series:
        if name in ("timed out", "fallback") and not any(values):
            continue
        row = _spark(rates[name], top, chars)
        peak = max(rates[name], default=0.0)
        lines.append(
            f"{name:<{label_w}}{bar}{_paint(row, code, colour)}{bar} "
            f"{sum(values)} total, peak {peak:.3g}/s"
        )
    for name, _ in result.breakers:
        letters = "".join(_LETTER.get(b.breakers.get(name, ""), "?") for b in buckets)
        if colour:
            letters = "".join(_paint(ch, _COLOUR.get(ch, "0"), True) for ch in letters)
        label = "breaker" if len(result.breakers) == 1 else name[: label_w - 1]
        lines.append(f"{label:<{label_w}}{bar}{letters}{bar} C closed, O open, H half-open")
    lines.append(
        f"{'':<{label_w}} one column = {_seconds(width)}; rates on one scale, "
        f"full height {top:.3g}/s"
    )
    lines.append("")
    lines.extend(_summary_lines(summary, dot))
    return "\n".join(lines) + "\n"


def _share(part: int, whole: int) -> str:
    return f"{part} ({part / whole:.1%})" if whole else str(part)


def _summary_lines(s: Summary, dot: str) -> list[str]:
    sep = f" {dot} "
    out = [
        f"requests    {s.requests}",
        f"attempts    {s.attempts} reached the dependency: "
        f"load amplification x{s.amplification:.2f} "
        f"(peak {s.peak_attempts_per_second}/s, {s.peak_in_flight} in flight)",
    ]
    o = s.outcomes
    parts = [f"ok {_share(o['ok'], s.requests)}"]
    if o["fallback"]:
        parts.append(f"fallback {_share(o['fallback'], s.requests)}")
    failed = ", ".join(f"{k} {v}" for k, v in s.failed.items())
    parts.append(f"failed {_share(o['failed'], s.requests)}" + (f": {failed}" if failed else ""))
    if o["timed_out"]:
        parts.append(f"timed out {_share(o['timed_out'], s.requests)}")
    rejected = ", ".join(f"{k} {v}" for k, v in s.rejected.items())
    parts.append(
        f"rejected {_share(o['rejected'], s.requests)}" + (f": {rejected}" if rejected else "")
    )
    out.append("callers     " + sep.join(parts))
    dependency = ", ".join(f"{k} {v}" for k, v in s.dependency.items())
    out.append(f"dependency  {dependency or 'never called'}")
    retries = f"retries     {s.retries} scheduled"
    if s.retry_budget_denied:
        retries += f", {s.retry_budget_denied} denied by the retry budget"
    if s.timeouts:
        retries += f"; {s.timeouts} timeouts fired"
    out.append(retries)
    for b in s.breakers:
        seq = " -> ".join(b.sequence)
        if len(b.sequence) > 8:
            seq = " -> ".join(b.sequence[:4]) + " -> ... -> " + " -> ".join(b.sequence[-3:])
        out.append(f"breaker     {b.name!r}: {seq} (opened {b.opened}x)")
        total = sum(b.time_in_state.values()) or 1.0
        times = sep.join(
            f"{state} {_seconds(t)} ({t / total:.0%})"
            for state, t in sorted(b.time_in_state.items(), key=lambda kv: -kv[1])
        )
        out.append(f"            {times}")
    lat = s.latency
    out.append(
        f"latency     p50 {_seconds(lat['p50'])}{sep}p90 {_seconds(lat['p90'])}{sep}"
        f"p99 {_seconds(lat['p99'])}{sep}max {_seconds(lat['max'])} (as callers saw it)"
    )
    for note in s.notes:
        out.append(f"note        {note}")
    return out
