"""``resilient top``: the snapshot as a table in the terminal, refreshing."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from .._clock import SYSTEM_CLOCK

__all__ = ["render", "top"]

_STATES = {
    "closed": "CLOSED",
    "open": "OPEN",
    "half_open": "HALF-OPEN",
    "forced_open": "FORCED-OPEN",
    "disabled": "DISABLED",
}
_COLOURS = {"closed": "32", "half_open": "33", "open": "1;31", "forced_open": "1;31"}
_COLUMNS = ("POLICY", "STATE", "FOR", "CALLS/S", "REJ/S", "RETRY/S", "FAIL", "SLOW", "DETAILS")
_RIGHT = {3, 4, 5}


def top(
    source: str,
    *,
    interval: float = 1.0,
    once: bool = False,
    top_keys: int = 5,
    only: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
    as_json: bool = False,
    format: str | None = None,
    out: TextIO | None = None,
) -> int:
    """Show *source* (a policy file or a snapshot URL) until interrupted (or once)."""
    stream = out or sys.stdout
    try:
        read = _reader(source, top_keys, headers, format)
    except Exception as exc:  # a bad file: report it the way `resilient check` does
        errors = getattr(exc, "errors", None)
        for error in errors or (exc,):
            print(str(error), file=sys.stderr)
        return 1
    clear = not once and not as_json and stream.isatty()
    colour = stream.isatty() and not os.environ.get("NO_COLOR")
    try:
        while True:
            try:
                data: dict[str, Any] | None = read()
                problem = None
            except (OSError, ValueError) as exc:
                data, problem = None, f"{source}: {exc}"
            if as_json and data is not None:
                text = json.dumps(data, indent=2) + "\n"
            elif data is not None:
                # Cut the lines to a terminal's width; a pipe or a file gets them whole.
                width = shutil.get_terminal_size().columns if stream.isatty() else 100_000
                text = render(data, source=source, only=only, width=width, colour=colour)
            else:
                text = f"resilient top: {problem}\n"
            if clear:
                stream.write("\x1b[H\x1b[2J")
            stream.write(text)
            stream.flush()
            if once:
                return 0 if data is not None else 1
            SYSTEM_CLOCK.sleep(interval)  # a terminal view, paced on the wall clock
    except KeyboardInterrupt:
        return 0


def _reader(
    source: str, top_keys: int, headers: Mapping[str, str] | None, format: str | None
) -> Callable[[], dict[str, Any]]:
    if source.startswith(("http://", "https://")):
        from ._app import RemoteSnapshot

        remote = RemoteSnapshot(source, headers=headers)
        return remote.fetch
    from ..config._registry import Registry
    from ._snapshot import snapshot

    registry = Registry(source, format)

    def read() -> dict[str, Any]:
        registry.poll()  # follow edits of the file
        return snapshot(registry, top_keys=top_keys)

    return read


def render(
    data: Mapping[str, Any],
    *,
    source: str = "",
    only: Sequence[str] | None = None,
    width: int = 120,
    colour: bool = False,
) -> str:
    """One frame: a header line and a table of the snapshot's policies."""
    policies = [p for p in data.get("policies") or () if not only or p["name"] in only]
    opened = sum(1 for p in policies if p.get("state") in ("open", "forced_open"))
    stamp = time.strftime("%H:%M:%S", time.localtime(data.get("time") or time.time()))
    head = f"resilient top  {source}  {stamp}  {len(policies)} policies, {opened} open"
    lines = [head[:width], ""]
    rows: list[list[str]] = []
    states: list[str | None] = []
    for policy in policies:
        rows.append(_row(policy))
        states.append(policy.get("state"))
        for key in policy.get("keys") or ():
            rows.append(_key_row(key))
            states.append(None)
    if not rows:
        lines.append("no policies")
        return "\n".join(lines) + "\n"
    sizes = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)]
    fixed = sum(sizes[:-1]) + 2 * (len(sizes) - 1)
    sizes[-1] = max(10, min(sizes[-1], width - fixed))
    lines.append(_line(list(_COLUMNS), sizes))
    for row, state in zip(rows, states, strict=True):
        text = _line(row, sizes)
        if colour and state in _COLOURS:
            start = sizes[0] + 2
            cell = text[start : start + sizes[1]]
            text = text[:start] + f"\x1b[{_COLOURS[state]}m{cell}\x1b[0m" + text[start + sizes[1] :]
        lines.append(text)
    return "\n".join(lines) + "\n"


def _line(cells: list[str], sizes: list[int]) -> str:
    out = []
    for i, (cell, size) in enumerate(zip(cells, sizes, strict=True)):
        cell = cell if len(cell) <= size else cell[: max(0, size - 1)] + "…"
        out.append(cell.rjust(size) if i in _RIGHT else cell.ljust(size))
    return "  ".join(out).rstrip()


def _row(policy: Mapping[str, Any]) -> list[str]:
    steps = policy.get("steps") or []
    breaker = next((s for s in steps if s.get("kind") == "circuit_breaker" and "state" in s), None)
    state = policy.get("state")
    rates = policy.get("rates")
    details: list[str] = []
    for step in steps:
        details.extend(_details(step))
    if rates:
        for reason, value in (rates.get("rejections") or {}).items():
            details.append(f"{reason} {_rate(value)}/s")
    return [
        str(policy.get("name")),
        _STATES.get(state, "-") if state else "-",
        _duration(breaker.get("time_in_state")) if breaker else "",
        _rate(rates.get("calls")) if rates else "-",
        _rate(rates["rejected"]) if rates else "-",
        _rate(rates["retries"]) if rates else "-",
        _ratio(breaker, "failure_rate") if breaker else "",
        _ratio(breaker, "slow_call_rate") if breaker else "",
        "  ".join(details),
    ]


def _key_row(key: Mapping[str, Any]) -> list[str]:
    detail = f"{key.get('remaining')}/{key.get('limit')} left"
    if key.get("retry_after"):
        detail += f", retry in {_duration(key['retry_after'])}"
    rejected = key.get("rejected")
    return [
        f"  └ {key.get('key')}",
        "",
        "",
        "",
        _rate(rejected) if rejected is not None else "",
        "",
        "",
        "",
        detail,
    ]


def _details(step: Mapping[str, Any]) -> list[str]:
    kind = step.get("kind")
    if kind == "circuit_breaker" and step.get("retry_after") is not None:
        return [f"probe in {_duration(step['retry_after'])}"]
    if "rate" in step and "limit" in step:
        keys = step.get("keys") or {}
        if keys.get("tracked") and not step.get("own_key_used"):
            return [f"limit {';'.join(step['rate'])} over {keys['tracked']} keys"]
        if step.get("remaining") is None:
            return [f"limit {';'.join(step['rate'])} ({step.get('store')})"]
        text = f"limit {step['remaining']}/{step['limit']} left"
        if step.get("retry_after"):
            text += f", retry in {_duration(step['retry_after'])}"
        return [text]
    if kind == "bulkhead":
        text = f"bulkhead {step.get('in_flight')}/{step.get('max_concurrent')}"
        if step.get("max_queued"):
            text += f" +{step.get('queued')}/{step.get('max_queued')} queued"
        return [text]
    if kind == "adaptive_concurrency":
        return [f"concurrency {step.get('in_flight')}/{step.get('limit')}"]
    if kind == "retry" and isinstance(step.get("budget"), dict):
        available = step["budget"].get("available")
        if isinstance(available, int | float):
            return [f"retry budget {int(available)} left"]
    if step.get("error"):
        return [f"{kind}: {step['error']}"]
    return []


def _ratio(step: Mapping[str, Any], name: str) -> str:
    value, threshold = step.get(name), step.get(name + "_threshold")
    if value is None or threshold is None:
        return ""
    return f"{value * 100:.0f}%/{threshold * 100:.0f}%"


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if value < 10:
        return f"{value:.1f}" if value >= 1 else f"{value:.2f}"
    return f"{value:,.0f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
