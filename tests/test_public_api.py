"""The public surface: __all__, lazy version, import cost, CLI."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import types
import warnings

import resilient
from resilient._cli import main


def test_all_is_sorted_and_exactly_the_public_names():
    assert resilient.__all__ == sorted(resilient.__all__, key=str.casefold)
    public = {
        name
        for name, value in vars(resilient).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert public == set(resilient.__all__)
    for name in resilient.__all__:
        assert getattr(resilient, name) is not None


def test_version_is_lazy_and_matches_metadata():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resilient.__version__ == importlib.metadata.version("resilient-middleware")
    assert "__version__" not in vars(resilient)


def test_unknown_attribute():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        resilient.nope  # noqa: B018


def test_import_does_not_pull_optional_integrations():
    code = (
        "import sys, resilient, resilient.observability, resilient.testing\n"
        "heavy = {'httpx','grpc','redis','yaml','prometheus_client','opentelemetry','structlog',"
        "'pydantic','msgspec'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_version(capsys):
    import pytest

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"resilient {resilient.__version__}"


def test_cli_without_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().err


def test_demo_runs_as_a_command():
    out = subprocess.run(
        [sys.executable, "-m", "resilient", "demo", "--no-tour"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "Retry, sync" in out.stdout
    assert "Retry, async" in out.stdout
    assert "fallback (ServiceUnavailableError)" in out.stdout
