"""``resilient top`` and ``resilient dashboard``."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Any

__all__ = ["add_commands"]

DEFAULT_PORT = 8765


def add_commands(sub: Any) -> None:
    """Add the live-state commands to the ``resilient`` command's subparsers."""
    top = sub.add_parser(
        "top",
        help="show the live state of every policy in the terminal, refreshing",
        description="Show every policy's state and rates as a table that refreshes. "
        "SOURCE is a policy file (its policies as built, in this process) or the URL of a "
        "running process's snapshot (ResilienceMiddleware(..., dashboard=...) serves it "
        "at <dashboard>/snapshot; the dashboard's own URL works too).",
    )
    top.add_argument("source", metavar="FILE-or-URL")
    top.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="refresh every (1)"
    )
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.add_argument("--keys", type=int, default=5, metavar="N", help="busiest keys shown (5)")
    top.add_argument("--policy", action="append", metavar="NAME", help="only these policies")
    top.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header for a URL (e.g. Authorization)",
    )
    top.add_argument("--json", action="store_true", help="print the JSON snapshot instead")
    top.add_argument("--format", choices=("yaml", "toml", "json"), help="of FILE (by suffix)")
    top.set_defaults(run=run_top)

    dash = sub.add_parser(
        "dashboard",
        help="serve the live dashboard web page for a policy file or a running process",
        description="Serve the dashboard page on loopback (by default). SOURCE is a policy "
        "file or the URL of a running process's snapshot (the page then shows that process).",
    )
    dash.add_argument("source", metavar="FILE-or-URL")
    dash.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"({DEFAULT_PORT})")
    dash.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (127.0.0.1: this machine only; the page has no login)",
    )
    dash.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="update every (1)"
    )
    dash.add_argument(
        "--header", action="append", default=[], metavar="'NAME: VALUE'", help="for a URL"
    )
    dash.add_argument("--format", choices=("yaml", "toml", "json"), help="of FILE (by suffix)")
    dash.set_defaults(run=run_dashboard)


def _headers(items: list[str]) -> dict[str, str]:
    headers = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise SystemExit(f"resilient: --header {item!r}: expected 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def run_top(args: argparse.Namespace) -> int:
    from ._top import top

    return top(
        args.source,
        interval=args.interval,
        once=args.once,
        top_keys=args.keys,
        only=args.policy,
        headers=_headers(args.header),
        as_json=args.json,
        format=args.format,
    )


def run_dashboard(args: argparse.Namespace) -> int:
    from .._errors import ConfigError
    from ._app import DashboardApp

    try:
        import uvicorn
    except ModuleNotFoundError:
        print(
            "resilient dashboard needs uvicorn: pip install 'resilient-middleware[dashboard]'",
            file=sys.stderr,
        )
        return 2
    source: Any
    if _is_url(args.source):
        source = args.source
    else:
        from ..config._registry import Registry

        try:
            source = Registry(args.source, args.format)
        except ConfigError as exc:
            for error in exc.errors:
                print(str(error), file=sys.stderr)
            return 1
    try:
        app = DashboardApp(source, interval=args.interval, title=f"resilient: {args.source}")
        if app.remote is not None:
            app.remote.headers.update(_headers(args.header))
    except ConfigError as exc:
        print(f"resilient: {exc}", file=sys.stderr)
        return 1
    if not _loopback(args.host):
        print(
            f"resilient: warning: listening on {args.host}: anyone who can reach it sees "
            "every policy (the standalone dashboard has no login)",
            file=sys.stderr,
        )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"resilient dashboard for {args.source}: http://{shown}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="off")
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
