"""``resilient check``, ``resilient show`` and ``resilient schema``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

from .._errors import ConfigError

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    """Add the policy-file commands to the ``resilient`` command's subparsers."""
    check = sub.add_parser(
        "check",
        help="validate policy files (exit status 1 on any error, one per line)",
        description="Validate policy files: every error on its own line "
        "(file:line: dotted.path: ...), then the warnings and each policy's worst case.",
    )
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--format", choices=("yaml", "toml", "json"), help="default: by suffix")
    check.add_argument("--strict", action="store_true", help="fail on warnings too")
    check.add_argument(
        "--no-imports",
        action="store_true",
        help="do not import the exception classes and callables the files name",
    )
    check.add_argument("--quiet", "-q", action="store_true", help="print only problems")
    check.set_defaults(run=run_check)

    show = sub.add_parser(
        "show",
        help="print the resolved pipelines of a policy file (credentials redacted)",
        description="Print each policy's pipeline, outermost first, after extends and "
        "defaults, with its worst-case latency and load amplification.",
    )
    show.add_argument("file", metavar="FILE")
    show.add_argument("--policy", metavar="NAME", help="only this policy")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.add_argument("--format", choices=("yaml", "toml", "json"), help="default: by suffix")
    show.set_defaults(run=run_show)

    schema = sub.add_parser(
        "schema",
        help="print the JSON Schema of policy files (for editors)",
        description="Print the JSON Schema (draft 2020-12) of policy files.",
    )
    schema.set_defaults(run=run_schema)


@contextlib.contextmanager
def quiet_config_log() -> Iterator[None]:
    """Silence the ``resilient.config`` logger: the commands (``check``, ``show``,
    ``simulate``) print the warnings themselves, and the logger must not repeat them."""
    log = logging.getLogger("resilient.config")
    disabled = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = disabled


def _errors(exc: ConfigError) -> None:
    for error in exc.errors:
        print(str(error))


def run_check(args: argparse.Namespace) -> int:
    from ._registry import Registry

    status = 0
    for file in args.files:
        try:
            with quiet_config_log():
                registry = Registry(file, args.format, resolve_imports=not args.no_imports)
        except ConfigError as exc:
            _errors(exc)
            status = 1
            continue
        for warning in registry.warnings:
            print(str(warning))
        if args.strict and registry.warnings:
            status = 1
        if not args.quiet:
            count = len(registry.warnings)
            notes = f", {_plural(count, 'warning')}" if count else ""
            print(f"{file}: ok ({_plural(len(registry), 'policy')}{notes})")
            for name in registry:
                print(f"  {name}: {registry.estimate(name)}")
    return status


def _plural(count: int, noun: str) -> str:
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"


def run_show(args: argparse.Namespace) -> int:
    from ._registry import Registry
    from ._render import to_json

    try:
        with quiet_config_log():
            registry = Registry(args.file, args.format)
    except ConfigError as exc:
        _errors(exc)
        return 1
    if args.policy is not None and args.policy not in registry:
        names = ", ".join(registry) or "none"
        print(f"{args.file}: no policy named {args.policy!r}; the policies are: {names}")
        return 1
    if args.json:
        print(json.dumps(to_json(registry, args.policy), indent=2))
    else:
        sys.stdout.write(registry.describe(args.policy))
    return 0


def run_schema(args: argparse.Namespace) -> int:
    from . import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0
