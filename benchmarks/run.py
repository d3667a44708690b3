"""Run the benchmarks side by side with the peers and record them.

    python -m benchmarks.run                 # every bench_*.py module
    python -m benchmarks.run retry breaker   # only these sections
    python -m benchmarks.run --quick         # smaller batches (smoke run)
    python -m benchmarks.run --no-write      # print only

Each module's tables replace its own section of docs/performance.md, so
sections measured in separate runs say so by their own header line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import pkgutil
import platform
import re
import sys
from pathlib import Path

from ._harness import Table

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
HEADER = """# Performance

Measured by `python -m benchmarks.run` (see `benchmarks/`): every peer is measured in the
same run as resilient, on the same machine, and the ratios are printed beside the raw numbers.
Lower is better for ns/call and for ratios of overhead. These are numbers from one machine
(2 cores); rerun them on yours. The test suite never asserts on timings.

"""


def modules() -> dict[str, str]:
    found = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("bench_"):
            found[info.name.removeprefix("bench_")] = f"benchmarks.{info.name}"
    return dict(sorted(found.items()))


def write_section(name: str, body: str) -> None:
    text = DOC.read_text() if DOC.exists() else HEADER
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "sections", nargs="*", help=f"sections to run (default: all of {', '.join(modules())})"
    )
    parser.add_argument("--quick", action="store_true", help="small batches, for a smoke run")
    parser.add_argument(
        "--no-write", action="store_true", help="print, do not update docs/performance.md"
    )
    args = parser.parse_args(argv)
    available = modules()
    chosen = args.sections or list(available)
    unknown = [s for s in chosen if s not in available]
    if unknown:
        parser.error(f"unknown sections {unknown}; available: {list(available)}")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"Python {platform.python_version()} on {platform.machine()} ({platform.system()})"
    for name in chosen:
        module = importlib.import_module(available[name])
        tables: list[Table] = module.run(args.quick)
        body = "\n".join(t.markdown() for t in tables)
        print(body, flush=True)
        if not args.no_write:
            write_section(
                name, f"_Run {stamp}, {machine}{', quick' if args.quick else ''}._\n\n{body}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
