#!/usr/bin/env python3
"""Generate the sync Redis store from the hand-written async one.

    python scripts/unasync.py           # (re)write the generated files
    python scripts/unasync.py --check   # exit 1 if a generated file is stale

Every ``resilient/backends/redis/_async/*.py`` becomes
``resilient/backends/redis/_sync/*.py`` through the substitution table below
(applied line by line, in order). A rule that no file uses is an error, so the
table cannot rot.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "resilient" / "backends" / "redis" / "_async"
TARGET = ROOT / "resilient" / "backends" / "redis" / "_sync"
HEADER = "# GENERATED from _async/{name} by scripts/unasync.py -- do not edit.\n"

RULES: list[tuple[str, str]] = [
    # The sync store also serves async code (one store per URL): its base class
    # adds the a-methods, running them on an AsyncRedisStore twin.
    (r"^from \.\._core import StoreCore$", "from .._core import DualCore"),
    (r"^class AsyncRedisStore\(StoreCore\):$", "class RedisStore(DualCore):"),
    (r"\bAsync([A-Z]\w*)", r"\1"),
    (r"\basync def ", "def "),
    (r"\bawait ", ""),
    (r"\ba(try_acquire|release|reset|ping|close)\b", r"\1"),
]
COMPILED = [(re.compile(pattern, re.MULTILINE), repl) for pattern, repl in RULES]


def convert(text: str, used: set[int]) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        for index, (pattern, repl) in enumerate(COMPILED):
            line, count = pattern.subn(repl, line)
            if count:
                used.add(index)
        out.append(line)
    return "".join(out)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    sources = sorted(SOURCE.glob("*.py"))
    if not sources:
        print(f"unasync: no sources in {SOURCE.relative_to(ROOT)}", file=sys.stderr)
        return 1
    used: set[int] = set()
    stale = []
    for source in sources:
        generated = HEADER.format(name=source.name) + convert(source.read_text(), used)
        target = TARGET / source.name
        if check:
            if not target.exists() or target.read_text() != generated:
                stale.append(str(target.relative_to(ROOT)))
        else:
            TARGET.mkdir(parents=True, exist_ok=True)
            target.write_text(generated)
    unused = [RULES[i][0] for i in range(len(RULES)) if i not in used]
    if unused:
        print(f"unasync: rules used by no file (remove them): {unused}", file=sys.stderr)
        return 1
    if stale:
        print(f"unasync: stale generated files, run scripts/unasync.py: {stale}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
