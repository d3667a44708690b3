"""Timeline charts of a simulation: SVG written by hand, PNG through matplotlib.

The chart has three panels over the same time axis: calls per second (the
callers' outcomes stacked as bars, with the offered load and the attempts that
reached the dependency drawn as lines), the load amplification (attempts per
offered request), and one band per circuit breaker coloured by its state, with
the exact transition times. The scenario's phases shade the background.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from .._errors import ConfigError
from ._engine import SimulationResult
from ._report import Bucket, intervals, nice_bucket, summarize, timeline

__all__ = ["render_svg", "write_chart"]

WIDTH = 960
LEFT, RIGHT = 70, 150
TOP = 64
RATES_H = 230
AMP_H = 70
BAND_H = 22
GAP = 30

OUTCOMES = (  # stacked bottom to top
    ("ok", "#2e9e5b", "ok"),
    ("fallback", "#7fc8a9", "fallback"),
    ("failed", "#d1453b", "failed"),
    ("timed_out", "#f0a030", "timed out"),
    ("rejected", "#9a8fb8", "rejected"),
)
OFFERED = "#222222"
ATTEMPTS = "#2f6fd6"
STATES = {
    "closed": "#2e9e5b",
    "half_open": "#f0c030",
    "open": "#d1453b",
    "forced_open": "#8e44ad",
    "disabled": "#aaaaaa",
}


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        top = step * 10**exponent
        if top >= value:
            return float(top)
    return float(10 ** (exponent + 1))  # pragma: no cover - the loop always returns


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _time_label(seconds: float) -> str:
    if seconds >= 3600 and not seconds % 3600:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and not seconds % 60:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def _ticks(span: float, count: int = 6) -> list[float]:
    raw = span / count
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if step >= raw:
            break
    else:
        step = math.ceil(raw / 3600) * 3600
    return [i * step for i in range(int(span // step) + 1)]


class _Svg:
    def __init__(self, width: int, height: int) -> None:
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" '
            'font-size="12">',
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        ]

    def add(self, text: str) -> None:
        self.parts.append(text)

    def rect(self, x: float, y: float, w: float, h: float, fill: str, title: str = "") -> None:
        if w <= 0 or h <= 0:
            return
        tip = f"<title>{escape(title)}</title>" if title else ""
        self.add(
            f'<rect x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(w)}" height="{_fmt(h)}" '
            f'fill="{fill}">{tip}</rect>'
            if tip
            else f'<rect x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(w)}" height="{_fmt(h)}" '
            f'fill="{fill}"/>'
        )

    def line(
        self, x1: float, y1: float, x2: float, y2: float, stroke: str, extra: str = ""
    ) -> None:
        self.add(
            f'<line x1="{_fmt(x1)}" y1="{_fmt(y1)}" x2="{_fmt(x2)}" y2="{_fmt(y2)}" '
            f'stroke="{stroke}"{extra}/>'
        )

    def text(self, x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> None:
        self.add(
            f'<text x="{_fmt(x)}" y="{_fmt(y)}" text-anchor="{anchor}"{extra}>{escape(text)}</text>'
        )

    def polyline(self, points: list[tuple[float, float]], stroke: str, extra: str = "") -> None:
        if not points:
            return
        coords = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in points)
        self.add(f'<polyline points="{coords}" fill="none" stroke="{stroke}"{extra}/>')

    def done(self) -> str:
        return "\n".join([*self.parts, "</svg>"]) + "\n"


def _steps(
    buckets: list[Bucket],
    values: list[float],
    x: Callable[[float], float],
    y: Callable[[float], float],
) -> list[tuple[float, float]]:
    """A step line through the buckets' values."""
    points: list[tuple[float, float]] = []
    for b, v in zip(buckets, values, strict=True):
        points.append((x(b.start), y(v)))
        points.append((x(b.end), y(v)))
    return points


def render_svg(result: SimulationResult, *, bucket: float | None = None) -> str:
    """The timeline chart as an SVG document (a string)."""
    span = result.span or 1.0
    width_s = nice_bucket(span) if bucket is None else bucket
    buckets = timeline(result, width_s)
    summary = summarize(result)
    plot_w = WIDTH - LEFT - RIGHT
    end = max(b.end for b in buckets)
    bands = len(result.breakers)
    rates_y = TOP
    amp_y = rates_y + RATES_H + GAP
    band_y = amp_y + AMP_H + GAP
    axis_y = band_y + bands * (BAND_H + 6) + (0 if bands else -GAP + 10)
    height = int(axis_y + 40)
    svg = _Svg(WIDTH, height)

    def x(t: float) -> float:
        return LEFT + plot_w * min(max(t, 0.0), end) / end

    # Title.
    svg.text(
        LEFT,
        22,
        f"policy {result.policy!r} · trace {result.trace.name} (seed {result.seed})",
        extra=' font-size="15" font-weight="bold"',
    )
    o = summary.outcomes
    n = summary.requests or 1
    svg.text(
        LEFT,
        42,
        f"{summary.requests} requests · {summary.attempts} attempts · amplification "
        f"x{summary.amplification:.2f} · ok {o['ok'] / n:.1%} · failed {o['failed'] / n:.1%} · "
        f"timed out {o['timed_out'] / n:.1%} · rejected {o['rejected'] / n:.1%} · "
        f"p99 {summary.latency['p99']:.3g} s",
        extra=' fill="#555555"',
    )

    # Phases: shaded background and labels.
    phases = sorted(result.trace.phases)
    bottom = band_y + bands * (BAND_H + 6) - 6 if bands else amp_y + AMP_H
    for k, (start, label) in enumerate(phases):
        stop = phases[k + 1][0] if k + 1 < len(phases) else end
        if k % 2:
            svg.rect(x(start), rates_y, x(stop) - x(start), bottom - rates_y, "#f2f2f2")
        if x(stop) - x(start) > 6 * len(label):
            svg.text(x(start) + 3, rates_y + 12, label, extra=' fill="#888888" font-size="11"')

    # Panel 1: calls per second.
    stacks = [[getattr(b, key) / b.width for key, _, _ in OUTCOMES] for b in buckets]
    offered = [b.offered / b.width for b in buckets]
    attempts = [b.attempts / b.width for b in buckets]
    top = _nice_max(max([sum(s) for s in stacks] + offered + attempts + [0.0]))

    def y_rate(v: float) -> float:
        return rates_y + RATES_H - RATES_H * v / top

    for i in range(5):
        v = top * i / 4
        svg.line(LEFT, y_rate(v), LEFT + plot_w, y_rate(v), "#e4e4e4")
        svg.text(LEFT - 6, y_rate(v) + 4, f"{v:g}", anchor="end", extra=' fill="#666666"')
    svg.text(
        14,
        rates_y + RATES_H / 2,
        "calls per second",
        anchor="middle",
        extra=f' transform="rotate(-90 14 {_fmt(rates_y + RATES_H / 2)})" fill="#444444"',
    )
    for b, stack in zip(buckets, stacks, strict=True):
        base = 0.0
        x0, x1 = x(b.start), x(b.end)
        for (key, colour, label), v in zip(OUTCOMES, stack, strict=True):
            if v > 0:
                svg.rect(
                    x0 + 0.5,
                    y_rate(base + v),
                    max(x1 - x0 - 1.0, 0.5),
                    y_rate(base) - y_rate(base + v),
                    colour,
                    f"{_time_label(b.start)}-{_time_label(b.end)}: {label} "
                    f"{getattr(b, key)} ({v:.3g}/s)",
                )
                base += v
    svg.polyline(
        _steps(buckets, offered, x, y_rate), OFFERED, ' stroke-width="1.5" stroke-dasharray="4 3"'
    )
    svg.polyline(_steps(buckets, attempts, x, y_rate), ATTEMPTS, ' stroke-width="2"')
    svg.line(LEFT, rates_y + RATES_H, LEFT + plot_w, rates_y + RATES_H, "#999999")

    # Legend.
    lx, ly = LEFT + plot_w + 16, rates_y + 6
    for _, colour, label in OUTCOMES:
        svg.rect(lx, ly, 12, 12, colour)
        svg.text(lx + 18, ly + 10, label)
        ly += 18
    svg.line(lx, ly + 6, lx + 12, ly + 6, OFFERED, ' stroke-width="1.5" stroke-dasharray="4 3"')
    svg.text(lx + 18, ly + 10, "offered")
    ly += 18
    svg.line(lx, ly + 6, lx + 12, ly + 6, ATTEMPTS, ' stroke-width="2"')
    svg.text(lx + 18, ly + 10, "attempts")

    # Panel 2: amplification.
    amp = [b.attempts / b.offered if b.offered else 0.0 for b in buckets]
    amp_top = _nice_max(max([*amp, 1.0]))

    def y_amp(v: float) -> float:
        return amp_y + AMP_H - AMP_H * v / amp_top

    svg.text(LEFT - 6, amp_y + 4, f"x{amp_top:g}", anchor="end", extra=' fill="#666666"')
    svg.text(LEFT - 6, y_amp(1.0) + 4, "x1", anchor="end", extra=' fill="#666666"')
    svg.text(LEFT - 6, amp_y + AMP_H + 4, "0", anchor="end", extra=' fill="#666666"')
    svg.line(LEFT, y_amp(1.0), LEFT + plot_w, y_amp(1.0), "#bbbbbb", ' stroke-dasharray="2 2"')
    svg.line(LEFT, amp_y + AMP_H, LEFT + plot_w, amp_y + AMP_H, "#999999")
    svg.polyline(_steps(buckets, amp, x, y_amp), ATTEMPTS, ' stroke-width="1.5"')
    svg.text(
        LEFT + plot_w + 16,
        amp_y + AMP_H / 2,
        "amplification",
        extra=' fill="#444444"',
    )
    svg.text(
        LEFT + plot_w + 16,
        amp_y + AMP_H / 2 + 15,
        "(attempts / offered)",
        extra=' fill="#888888" font-size="11"',
    )

    # Panel 3: breaker states, exact.
    for row, (name, initial) in enumerate(result.breakers):
        top_y = band_y + row * (BAND_H + 6)
        steps = intervals(result, name, initial)
        for (since, state), (until, _) in zip(steps, [*steps[1:], (end, "")], strict=True):
            svg.rect(
                x(since),
                top_y,
                x(until) - x(since),
                BAND_H,
                STATES.get(state, "#cccccc"),
                f"{name}: {state} from {since:.3f}s to {until:.3f}s",
            )
        svg.text(LEFT + plot_w + 16, top_y + 15, f"breaker {name}")
    if result.breakers:
        ly = band_y + bands * (BAND_H + 6) + 2
        lx = LEFT
        for state in ("closed", "open", "half_open"):
            svg.rect(lx, ly + 26, 10, 10, STATES[state])
            svg.text(lx + 14, ly + 35, state.replace("_", "-"), extra=' font-size="11"')
            lx += 80

    # Time axis.
    for t in _ticks(end):
        svg.line(x(t), axis_y - 4, x(t), axis_y + 2, "#666666")
        svg.text(x(t), axis_y + 15, _time_label(t), anchor="middle", extra=' fill="#444444"')
    svg.line(LEFT, axis_y - 4, LEFT + plot_w, axis_y - 4, "#666666")
    return svg.done()


def _write_png(result: SimulationResult, path: Path, bucket: float | None) -> None:
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg", force=False)
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        raise ConfigError(
            "--out", str(path), "an .svg file: PNG charts need matplotlib (pip install matplotlib)"
        ) from None
    span = result.span or 1.0
    buckets = timeline(result, nice_bucket(span) if bucket is None else bucket)
    bands = len(result.breakers)
    ratios = [4, 1.3] + [0.5] * bands
    fig, axes = plt.subplots(
        len(ratios),
        1,
        sharex=True,
        figsize=(10, 4.5 + 0.5 * bands),
        gridspec_kw={"height_ratios": ratios},
    )
    rates, amp_ax = axes[0], axes[1]
    starts = [b.start for b in buckets]
    widths = [b.width for b in buckets]
    base = [0.0] * len(buckets)
    for key, colour, label in OUTCOMES:
        values = [getattr(b, key) / b.width for b in buckets]
        if any(values):
            rates.bar(
                starts,
                values,
                width=widths,
                bottom=base,
                color=colour,
                label=label,
                align="edge",
                linewidth=0,
            )
            base = [a + v for a, v in zip(base, values, strict=True)]
    edges = [*starts, buckets[-1].end]
    rates.stairs(
        [b.offered / b.width for b in buckets],
        edges,
        color=OFFERED,
        linestyle="--",
        label="offered",
    )
    rates.stairs(
        [b.attempts / b.width for b in buckets],
        edges,
        color=ATTEMPTS,
        linewidth=2,
        label="attempts",
    )
    rates.set_ylabel("calls per second")
    rates.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    rates.set_title(
        f"policy {result.policy!r} · trace {result.trace.name} (seed {result.seed})", fontsize=11
    )
    amp_ax.stairs(
        [b.attempts / b.offered if b.offered else 0.0 for b in buckets], edges, color=ATTEMPTS
    )
    amp_ax.axhline(1.0, color="#bbbbbb", linestyle=":")
    amp_ax.set_ylabel("amplification", fontsize=8)
    for ax, (name, initial) in zip(axes[2:], result.breakers, strict=True):
        steps = intervals(result, name, initial)
        for (since, state), (until, _) in zip(steps, [*steps[1:], (edges[-1], "")], strict=True):
            ax.axvspan(since, until, color=STATES.get(state, "#cccccc"))
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    axes[-1].set_xlabel("seconds")
    axes[-1].set_xlim(0, edges[-1])
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def write_chart(
    result: SimulationResult, path: str | os.PathLike[str], *, bucket: float | None = None
) -> Path:
    """Write the chart to *path*: ``.svg`` (always available) or ``.png`` (needs
    matplotlib). Returns the path written."""
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix == ".svg":
        out.write_text(render_svg(result, bucket=bucket), encoding="utf-8")
    elif suffix == ".png":
        _write_png(result, out, bucket)
    else:
        raise ConfigError("--out", str(path), "a file name ending in .svg or .png")
    return out
