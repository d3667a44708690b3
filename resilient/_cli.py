"""The ``resilient`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _version() -> str:
    from importlib.metadata import version

    return version("resilient-middleware")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resilient", description="Resilience policies for Python services."
    )
    parser.add_argument("--version", action="version", version=f"resilient {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="run the built-in demo: policies against flaky services (in memory, loopback only)",
    )
    demo.add_argument(
        "--redis",
        metavar="URL",
        help="keep the tour's rate-limit state in this Redis (e.g. redis://127.0.0.1:6379/0)",
    )
    demo.add_argument(
        "--no-tour", action="store_true", help="skip the end-to-end HTTP tour over loopback"
    )
    from .config._commands import add_commands

    add_commands(sub)  # check, show, schema
    from .dashboard._commands import add_commands as add_live_commands

    add_live_commands(sub)  # top, dashboard
    from .simulate._commands import add_commands as add_simulate_commands

    add_simulate_commands(sub)  # simulate
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo(tour=not args.no_tour, redis_url=args.redis)
    run = getattr(args, "run", None)
    if run is not None:
        return int(run(args))
    parser.print_help(sys.stderr)
    return 2
