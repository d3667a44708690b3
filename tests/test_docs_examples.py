"""Every code sample in the docs is a file under docs/examples/: each runs here, as a
script in its own interpreter, with its self-checks, and with no network beyond loopback.
The pages only include samples that exist, section by section."""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
SAMPLES = sorted(EXAMPLES.glob("*.py"))

# Refuses any connection that is not to the loopback interface or in-process, then runs
# the example as __main__.
GUARD = """
import ipaddress, runpy, socket, sys

def _loopback(address):
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost", "testserver", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

def _checked(method):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
            raise ConnectionRefusedError(f"docs examples stay on loopback, not {address!r}")
        return method(self, address)
    return connect

socket.socket.connect = _checked(socket.socket.connect)
socket.socket.connect_ex = _checked(socket.socket.connect_ex)
_getaddrinfo = socket.getaddrinfo

def getaddrinfo(host, *args, **kwargs):
    if host is not None and not _loopback((host if isinstance(host, str) else host.decode(),)):
        raise socket.gaierror(f"docs examples resolve no public names ({host!r})")
    return _getaddrinfo(host, *args, **kwargs)

socket.getaddrinfo = getaddrinfo
path = sys.argv[1]
sys.argv = [path]
runpy.run_path(path, run_name="__main__")
"""

SNIPPET = re.compile(r'--8<-- "(?P<file>[^":]+)(?::(?P<section>[\w-]+))?"')


def start(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", GUARD, str(path)],
        cwd=path.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(path: Path) -> subprocess.CompletedProcess[str]:
    process = start(path)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def results() -> dict[str, subprocess.CompletedProcess[str]]:
    """Every example's run, a few interpreters at a time."""
    done: dict[str, subprocess.CompletedProcess[str]] = {}
    with ThreadPoolExecutor(max_workers=3) as pool:
        for path, result in zip(SAMPLES, pool.map(run, SAMPLES), strict=True):
            done[path.name] = result
    return done


def test_there_are_examples() -> None:
    assert len(SAMPLES) >= 20


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_example_runs_and_checks_itself(
    path: Path, results: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    result = results[path.name]
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr


def test_the_guard_refuses_the_network(tmp_path: Path) -> None:
    script = tmp_path / "outbound.py"
    script.write_text(
        "import socket\n"
        "s = socket.socket()\n"
        "try:\n"
        "    s.connect(('192.0.2.1', 80))\n"
        "except ConnectionRefusedError as exc:\n"
        "    assert 'loopback' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('connected')\n"
        "try:\n"
        "    socket.getaddrinfo('example.com', 443)\n"
        "except socket.gaierror:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('resolved')\n"
    )
    assert run(script).returncode == 0
    failing = tmp_path / "failing.py"
    failing.write_text("assert 1 + 1 == 3\n")
    assert run(failing).returncode != 0


def snippet_references() -> list[tuple[Path, str, str | None]]:
    refs = []
    for page in sorted(DOCS.rglob("*.md")):
        for match in SNIPPET.finditer(page.read_text()):
            refs.append((page, match["file"], match["section"]))
    return refs


def test_every_snippet_names_an_existing_section() -> None:
    refs = snippet_references()
    assert refs
    for page, name, section in refs:
        source = EXAMPLES / name
        assert source.is_file(), f"{page.name} includes missing {name}"
        if section is not None:
            text = source.read_text()
            assert f"--8<-- [start:{section}]" in text, f"{page.name}: no {name}:{section}"
            assert f"--8<-- [end:{section}]" in text, f"{page.name}: {name}:{section} not closed"


def test_every_example_is_shown_somewhere() -> None:
    shown = {name for _, name, _ in snippet_references()}
    assert {p.name for p in SAMPLES} <= shown
