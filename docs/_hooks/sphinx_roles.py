"""MkDocs hook: docstrings written with Sphinx cross-reference roles render as code.

The package's docstrings use ``:class:`~resilient.Retry``` and friends, which Markdown
would show verbatim. This hook rewrites each role to a code span (``~`` keeps only the
last dotted part, as in Sphinx) and an RST literal-block marker (``Example::`` before a
blank line) to a plain colon, before any other Markdown processing.
"""

from __future__ import annotations

import re
from typing import Any

from markdown import Extension, Markdown
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|data|attr|exc|obj|const):`(~?)([^`]+)`")


def _code(match: re.Match[str]) -> str:
    target = match[2]
    if match[1]:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


class _Roles(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        out = []
        for index, line in enumerate(lines):
            line = ROLE.sub(_code, line)
            following = lines[index + 1] if index + 1 < len(lines) else ""
            if line.endswith("::") and not following.strip() and not line.startswith(" "):
                line = line[:-1]
            out.append(line)
        return out


class SphinxRoles(Extension):
    def extendMarkdown(self, md: Markdown) -> None:  # noqa: N802 - Markdown's API
        md.preprocessors.register(_Roles(md), "sphinx_roles", 40)


@event_priority(100)  # before mkdocstrings copies the Markdown extensions
def on_config(config: Any) -> Any:
    config.markdown_extensions.append(SphinxRoles())
    return config
