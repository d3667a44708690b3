"""The docs site builds with ``mkdocs build --strict`` (broken links, missing anchors,
missing snippets and API objects that do not resolve all fail it), and the pages carry the
included samples and the rendered API reference.

Marked ``slow`` (a few seconds); it is part of the default run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


# The guide's own pages: besides the strict build, every anchor they link to must exist.
OWN_PAGES = (
    "index.md",
    "quickstart.md",
    "policies/",
    "pipelines.md",
    "sync-async.md",
    "testing.md",
    "errors.md",
    "reference.md",
    "comparison.md",
    "migration.md",
)


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result.stdout + result.stderr


@pytest.fixture(scope="module")
def site(build: tuple[Path, str]) -> Path:
    return build[0]


def test_the_guides_links_reach_existing_anchors(build: tuple[Path, str]) -> None:
    broken = [
        line
        for line in build[1].splitlines()
        if "does not contain an anchor" in line
        and any(f"Doc file '{page}" in line for page in OWN_PAGES)
    ]
    assert broken == []


def page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text()


def test_every_page_is_built(site: Path) -> None:
    for name in (
        "quickstart",
        "policies/retry",
        "policies/circuit-breaker",
        "policies/rate-limiting",
        "policies/timeout",
        "policies/bulkhead",
        "policies/fallback",
        "policies/retry-budget",
        "pipelines",
        "sync-async",
        "testing",
        "errors",
        "migration",
        "comparison",
        "reference",
    ):
        assert (site / name / "index.html").is_file(), name
    assert (site / "index.html").is_file()


def test_samples_are_included_not_referenced(site: Path) -> None:
    html = page(site, "quickstart")
    assert "--8&lt;--" not in html
    assert "--8<--" not in html
    assert "Inventory" not in html  # the stand-in service is outside the shown section
    assert "CircuitBreaker" in html


def test_the_reference_renders_the_api(site: Path) -> None:
    html = page(site, "reference")
    for name in ("Retry", "CircuitBreaker", "retry_from_tenacity", "pybreaker_clock", "FakeClock"):
        assert f'id="resilient.{name}"' in html or f".{name}" in html, name
    assert "attempts" in html
    # Sphinx roles in docstrings are rendered as code, not shown verbatim.
    assert ":class:" not in html
    assert ":meth:" not in html


def test_no_example_sources_are_published(site: Path) -> None:
    assert not (site / "examples").exists()
