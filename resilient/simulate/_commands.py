"""``resilient simulate``."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Any

from ..config._commands import quiet_config_log

__all__ = ["add_commands", "run_simulate"]


def add_commands(sub: Any) -> None:
    """Add ``simulate`` to the ``resilient`` command's subparsers."""
    from ._scenarios import SCENARIOS

    scenarios = "; ".join(f"{s.name}: {s.description}" for s in SCENARIOS.values())
    simulate = sub.add_parser(
        "simulate",
        help="replay a traffic and failure trace through a policy, in virtual time",
        description="Replay a bundled scenario or a recorded trace (CSV or JSON: time, latency, "
        "outcome, headers) through a policy of FILE on a virtual clock, then print a timeline "
        "of calls, attempts, rejections, retries and breaker states with a summary, and "
        "optionally write a chart. Scenarios: " + scenarios + ".",
    )
    simulate.add_argument(
        "file",
        metavar="FILE",
        nargs="?",
        help="a policy file (YAML, TOML or JSON); default: the bundled one, whose policies "
        "are naive, guarded and patient",
    )
    simulate.add_argument(
        "--policy", metavar="NAME", help="the policy to simulate (optional if FILE has one)"
    )
    source = simulate.add_mutually_exclusive_group(required=True)
    source.add_argument("--scenario", choices=sorted(SCENARIOS), help="a bundled scenario")
    source.add_argument(
        "--trace", metavar="TRACE", help="a recorded trace: .csv or .json (see the docs)"
    )
    simulate.add_argument(
        "--seed", type=int, default=0, help="seed of the scenario and of the jitter (0)"
    )
    simulate.add_argument(
        "--rate",
        type=float,
        default=20.0,
        metavar="PER_SECOND",
        help="requests a second in a scenario (20)",
    )
    simulate.add_argument(
        "--capacity",
        type=int,
        metavar="N",
        help="the dependency works on at most N requests at once and refuses the rest "
        "(503): retries then make an overload worse (default: no limit)",
    )
    simulate.add_argument(
        "--bucket", type=float, metavar="SECONDS", help="time per column (default: ~60 columns)"
    )
    simulate.add_argument(
        "--out",
        action="append",
        default=[],
        metavar="CHART",
        help="write the chart: .svg, or .png (needs matplotlib); may be repeated",
    )
    simulate.add_argument(
        "--save-trace",
        metavar="TRACE",
        help="also write the replayed trace (.csv or .json), e.g. to edit a scenario",
    )
    simulate.add_argument(
        "--json", action="store_true", help="print the summary and timeline as JSON"
    )
    simulate.add_argument(
        "--format", choices=("yaml", "toml", "json"), help="of FILE (default: by suffix)"
    )
    simulate.set_defaults(run=run_simulate)


def _fail(message: str) -> int:
    print(f"resilient simulate: {message}", file=sys.stderr)
    return 1


def _unicode(stream: Any) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "│▁█·".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def run_simulate(args: argparse.Namespace) -> int:
    from .._errors import ConfigError
    from ._chart import write_chart
    from ._engine import simulate_file
    from ._loop import SimulationStalledError
    from ._report import render_text, summarize, timeline
    from ._scenarios import BUNDLED_POLICIES, scenario
    from ._trace import load_trace

    if args.bucket is not None and not args.bucket > 0:
        return _fail(f"--bucket: expected seconds > 0, got {args.bucket:g}")
    for out in [*args.out, *([args.save_trace] if args.save_trace else [])]:
        if os.path.splitext(out)[1].lower() not in (".svg", ".png", ".csv", ".json"):
            return _fail(f"{out}: expected a file ending in .svg or .png (charts), .csv or .json")
    try:
        if args.scenario is not None:
            trace = scenario(args.scenario, seed=args.seed, rate=args.rate)
        else:
            trace = load_trace(args.trace)
        with quiet_config_log():
            result = simulate_file(
                args.file or BUNDLED_POLICIES,
                args.policy,
                trace,
                seed=args.seed,
                capacity=args.capacity,
                format=args.format,
            )
    except ConfigError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename or ''}: {exc.strerror or exc}")
    except SimulationStalledError as exc:
        return _fail(str(exc))

    info = sys.stderr if args.json else sys.stdout
    written = []
    try:
        timeline(result, args.bucket)  # a bucket too small for the span fails here, first
        if args.save_trace:
            path = args.save_trace
            text = trace.to_json() if path.lower().endswith(".json") else trace.to_csv()
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
            written.append(path)
        for out in args.out:
            written.append(str(write_chart(result, out, bucket=args.bucket)))
    except ValueError as exc:  # ConfigError too
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename or ''}: {exc.strerror or exc}")

    if args.json:
        document = {
            "summary": summarize(result).as_dict(),
            "state_changes": [
                {"at": c.at, "breaker": c.breaker, "old": c.old, "new": c.new, "why": c.why}
                for c in result.state_changes
            ],
            "timeline": [
                {
                    "start": b.start,
                    "end": b.end,
                    "offered": b.offered,
                    "attempts": b.attempts,
                    "ok": b.ok,
                    "fallback": b.fallback,
                    "failed": b.failed,
                    "timed_out": b.timed_out,
                    "rejected": b.rejected,
                    "retries": b.retries,
                    "breakers": b.breakers,
                }
                for b in timeline(result, args.bucket)
            ],
        }
        print(json.dumps(document, indent=2))
    else:
        stream = sys.stdout
        columns = shutil.get_terminal_size((100, 24)).columns if stream.isatty() else 100
        colour = stream.isatty() and not os.environ.get("NO_COLOR")
        text = render_text(
            result,
            bucket=args.bucket,
            columns=max(20, min(columns - 40, 120)),
            colour=colour,
            unicode=_unicode(stream),
        )
        stream.write(text)
    for path in written:
        print(f"wrote {path}", file=info)
    return 0
