"""``resilient simulate``: the bundled scenarios through the bundled policies, exactly."""

from __future__ import annotations

import functools
import itertools
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from resilient._cli import main
from resilient.simulate import (
    BUNDLED_POLICIES,
    SCENARIOS,
    AttemptRecord,
    SimulationResult,
    Trace,
    load_trace,
    render_svg,
    render_text,
    scenario,
    simulate_file,
    write_chart,
)

ROOT = Path(__file__).resolve().parent.parent
POLICIES = BUNDLED_POLICIES


@functools.cache
def run(name: str, policy: str, seed: int = 0) -> SimulationResult:
    return simulate_file(POLICIES, policy, scenario(name, seed=seed))


def counts(result: SimulationResult) -> dict[str, object]:
    s = result.summary()
    return {
        "requests": s.requests,
        "attempts": s.attempts,
        "outcomes": {k: v for k, v in s.outcomes.items() if v},
        "failed": s.failed,
        "rejected": s.rejected,
        "retries": s.retries,
        "retry_budget_denied": s.retry_budget_denied,
        "timeouts": s.timeouts,
    }


# -- the bundled scenarios, each through the policy written for it -------------------------


def test_the_bundled_scenarios_are_listed():
    assert list(SCENARIOS) == ["outage", "brownout", "rate-limited", "flapping"]


def test_outage_through_guarded_opens_probes_and_closes_after_recovery():
    result = run("outage", "guarded")
    assert result.state_sequence() == ["closed"] + ["open", "half_open"] * 9 + ["closed"]
    first, last = result.state_changes[0], result.state_changes[-1]
    assert first.new == "open"
    assert 60.0 < first.at < 65.0  # the outage starts at 60 s
    assert "failure rate" in first.why
    assert last.new == "closed"
    assert 150.0 <= last.at < 161.0  # the first probe after recovery (open_for 10 s)
    assert counts(result) == {
        "requests": 5926,
        "attempts": 4280,
        "outcomes": {"ok": 4100, "failed": 74, "rejected": 1752},
        "failed": {"error": 74},
        "rejected": {"circuit_open": 1750, "half_open_full": 2},
        "retries": 106,
        "retry_budget_denied": 45,
        "timeouts": 0,
    }
    assert result.amplification == pytest.approx(4280 / 5926)
    breaker = result.summary().breakers[0]
    assert breaker.opened == 9
    assert breaker.time_in_state["open"] == pytest.approx(90.3, abs=0.1)


def test_outage_through_naive_almost_doubles_the_load():
    result = run("outage", "naive")
    assert result.state_sequence() == []  # no breaker
    assert counts(result) == {
        "requests": 5926,
        "attempts": 11169,
        "outcomes": {"ok": 4192, "failed": 1734},
        "failed": {"error": 1734},
        "rejected": {},
        "retries": 5243,
        "retry_budget_denied": 0,
        "timeouts": 0,
    }
    assert result.summary().amplification == pytest.approx(1.8847)
    # During the outage every request makes its four attempts.
    outage = [r for r in result.requests if 61.0 <= r.arrival < 149.0]
    assert {r.attempts for r in outage} == {4}
    assert {r.outcome for r in outage} == {"failed"}
    assert any("retry-without-budget" in note for note in result.notes)


def test_brownout_through_guarded_trips_on_slow_calls_and_times_out_attempts():
    result = run("brownout", "guarded")
    assert result.state_sequence() == ["closed"] + ["open", "half_open"] * 6 + ["closed"]
    assert "slow-call rate" in result.state_changes[0].why
    assert counts(result) == {
        "requests": 5926,
        "attempts": 5025,
        "outcomes": {"ok": 4584, "timed_out": 65, "rejected": 1277},
        "failed": {},
        "rejected": {"circuit_open": 1184, "half_open_full": 93},
        "retries": 376,
        "retry_budget_denied": 55,
        "timeouts": 441,
    }
    dependency = result.summary().dependency
    assert dependency == {"ok": 4584, "cancelled": 441}  # each timeout abandoned an attempt
    # A timed-out attempt was given up after its 1 s budget (or sooner, at the 5 s total).
    cancelled = [a.end - a.start for a in result.attempts if a.outcome == "cancelled"]
    assert max(cancelled) == pytest.approx(1.0, abs=1e-9)
    assert sum(1 for d in cancelled if abs(d - 1.0) < 1e-9) > 400


def test_rate_limited_through_patient_waits_as_retry_after_asks():
    result = run("rate-limited", "patient")
    assert counts(result) == {
        "requests": 5926,
        "attempts": 7513,
        "outcomes": {"ok": 5645, "failed": 281},
        "failed": {"429": 281},
        "rejected": {},
        "retries": 1587,
        "retry_budget_denied": 94,
        "timeouts": 0,
    }
    assert result.summary().dependency == {"ok": 5645, "429": 1868}
    # Each retry after a 429 waited exactly what the answer's Retry-After asked.
    by_request: dict[int, list[AttemptRecord]] = {}
    for attempt in result.attempts:
        by_request.setdefault(attempt.request, []).append(attempt)
    waits = []
    for attempts in by_request.values():
        attempts.sort(key=lambda a: a.start)
        assert attempts[0].row == attempts[0].request  # a first attempt gets its own row
        for before, after in itertools.pairwise(attempts):
            assert before.outcome == "429"
            hint = result.trace.rows[before.row].retry_after
            assert after.start - before.end == pytest.approx(hint, abs=1e-9)
            waits.append(hint)
    assert len(waits) == 1587
    assert set(waits) == {1.0}


def test_flapping_through_guarded_opens_and_closes_with_each_wave():
    result = run("flapping", "guarded")
    assert result.state_sequence() == ["closed"] + ["open", "half_open", "closed"] * 9 + ["open"]
    opens = [c.at for c in result.state_changes if c.new == "open"]
    assert len(opens) == 10
    assert all(20.0 <= at % 30.0 < 30.0 for at in opens)  # only while the dependency fails
    assert counts(result) == {
        "requests": 5926,
        "attempts": 4581,
        "outcomes": {"ok": 3379, "failed": 610, "rejected": 1937},
        "failed": {"503": 610},
        "rejected": {"circuit_open": 1933, "half_open_full": 4},
        "retries": 592,
        "retry_budget_denied": 425,
        "timeouts": 0,
    }


def test_a_run_is_reproducible_and_the_seed_matters():
    again = simulate_file(POLICIES, "guarded", scenario("flapping"))
    assert again.summary() == run("flapping", "guarded").summary()
    assert again.state_changes == run("flapping", "guarded").state_changes
    assert again.attempts == run("flapping", "guarded").attempts
    one, other = (
        simulate_file(POLICIES, "guarded", scenario("flapping", seed=s, rate=5)) for s in (1, 2)
    )
    assert one.summary() != other.summary()


# -- output -------------------------------------------------------------------------------------


def test_the_terminal_view_draws_the_timeline_and_the_summary():
    text = render_text(run("outage", "guarded"))
    lines = text.splitlines()
    breaker = next(line for line in lines if line.startswith("breaker  "))
    strip = breaker.split("│")[1]
    assert len(strip) == 60  # 5 minutes in 5 s columns
    assert strip == "C" * 12 + "O" * 19 + "C" * 29
    assert any(line.startswith("phase") and "outage" in line for line in lines)
    assert "load amplification x0.72" in text
    assert "rejected 1752 (29.6%): circuit_open 1750, half_open_full 2" in text
    assert "'guarded': closed -> open -> half_open -> open" in text


def test_the_terminal_view_in_ascii_and_in_colour():
    result = run("outage", "guarded")
    plain = render_text(result, unicode=False)
    assert plain.isascii()
    assert "|CCCCCCCCCCCCOOO" in plain
    coloured = render_text(result, colour=True)
    assert "\x1b[31mO\x1b[0m" in coloured
    narrow = render_text(result, bucket=30.0)
    breaker = next(line for line in narrow.splitlines() if line.startswith("breaker  "))
    assert breaker.split("│")[1] == "CCOOOOCCCC"  # open from 63 s to 155 s


def test_the_svg_chart_is_well_formed_and_shows_each_state():
    result = run("outage", "guarded")
    svg = render_svg(result)
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    titles = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title")]
    states = [t.split(":")[1].split()[0] for t in titles if t.startswith("guarded:")]
    assert states == result.state_sequence()
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {"healthy", "outage", "recovered", "breaker guarded", "attempts"} <= texts


def test_charts_are_written(tmp_path):
    result = run("brownout", "guarded")
    svg = write_chart(result, tmp_path / "chart.svg")
    assert svg.stat().st_size > 1000
    ET.parse(svg)
    png = tmp_path / "chart.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="matplotlib"):
            write_chart(result, png)
    else:
        write_chart(result, png)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match=r"\.svg or \.png"):
        write_chart(result, tmp_path / "chart.pdf")


def test_a_chart_without_a_breaker(tmp_path):
    root = ET.fromstring(render_svg(run("outage", "naive")))
    titles = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert titles
    assert not any(t.startswith("naive:") for t in titles)


def test_the_summary_as_json_is_plain():
    document = run("outage", "guarded").summary().as_dict()
    assert json.loads(json.dumps(document)) == document
    assert document["breakers"][0]["sequence"][:3] == ["closed", "open", "half_open"]


# -- the command ----------------------------------------------------------------------------------


def test_the_command_as_a_subprocess(tmp_path):
    chart = tmp_path / "outage.svg"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "resilient",
            "simulate",
            str(POLICIES),
            "--policy",
            "guarded",
            "--scenario",
            "outage",
            "--out",
            str(chart),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    document = json.loads(out.stdout)
    summary = document["summary"]
    assert summary["requests"] == 5926
    assert summary["attempts"] == 4280
    assert summary["breakers"][0]["sequence"] == run("outage", "guarded").state_sequence()
    assert len(document["timeline"]) == 60
    assert sum(b["offered"] for b in document["timeline"]) == 5926
    assert [c["new"] for c in document["state_changes"]][:2] == ["open", "half_open"]
    assert f"wrote {chart}" in out.stderr
    ET.parse(chart)


def test_the_command_prints_the_timeline(capsys, tmp_path):
    saved = tmp_path / "flapping.csv"
    status = main(
        [
            "simulate",
            str(POLICIES),
            "--policy",
            "guarded",
            "--scenario",
            "flapping",
            "--save-trace",
            str(saved),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "breaker    │CCCCCOOOCCCOOO" in out
    assert f"wrote {saved}" in out
    # The saved trace replays to the same result.
    assert main(["simulate", str(POLICIES), "--policy", "guarded", "--trace", str(saved)]) == 0
    replayed = capsys.readouterr().out
    assert "attempts    4581 reached the dependency" in replayed
    assert load_trace(saved).rows == scenario("flapping").rows


def test_the_command_reports_bad_input(capsys, tmp_path):
    assert main(["simulate", str(POLICIES), "--scenario", "outage"]) == 1
    assert "naive, guarded, patient" in capsys.readouterr().err
    assert main(["simulate", str(POLICIES), "--policy", "nope", "--scenario", "outage"]) == 1
    assert "'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("time,latency,outcome\n0,0.1,ok\n1,-2,ok\n2,0.1,teapot\n")
    assert main(["simulate", str(POLICIES), "--policy", "naive", "--trace", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3: row 2, column latency" in err
    assert f"{bad}:4: row 3, column outcome" in err
    missing = tmp_path / "missing.csv"
    assert main(["simulate", str(POLICIES), "--policy", "naive", "--trace", str(missing)]) == 1
    assert "No such file" in capsys.readouterr().err
    args = ["simulate", str(POLICIES), "--policy", "naive", "--scenario", "outage"]
    assert main([*args, "--out", str(tmp_path / "x.pdf")]) == 1
    assert ".svg or .png" in capsys.readouterr().err
    assert main([*args, "--bucket", "0"]) == 1
    assert "--bucket" in capsys.readouterr().err
    assert main([*args, "--bucket", "0.001"]) == 1
    assert "use a wider one" in capsys.readouterr().err
    assert main([*args, "--capacity", "0"]) == 1
    assert "capacity: expected an int >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", str(POLICIES), "--policy", "naive"])  # neither scenario nor trace
    with pytest.raises(SystemExit):
        main([*args, "--trace", str(bad)])  # both


def test_a_trace_is_a_trace():
    assert isinstance(scenario("outage"), Trace)


# -- the docs show what the command prints ---------------------------------------------------------


def test_the_docs_page_shows_the_commands_output(capsys, monkeypatch, tmp_path):
    page = (ROOT / "docs" / "simulate.md").read_text(encoding="utf-8")
    shown = page.split("<!-- simulate-output:start -->\n```text\n")[1].split("```\n")[0]
    monkeypatch.chdir(tmp_path)
    args = ["simulate", "--policy", "guarded", "--scenario", "outage"]  # the bundled policies
    assert main([*args, "--out", "outage.svg"]) == 0
    printed = capsys.readouterr().out
    assert printed == shown, "docs/simulate.md: paste the command's output again"
    policies = page.split("<!-- bundled-policies:start -->\n```toml\n")[1].split("```\n")[0]
    assert policies == BUNDLED_POLICIES.read_text(encoding="utf-8")
    image = (ROOT / "docs" / "img" / "simulate-outage.svg").read_text(encoding="utf-8")
    assert image == (tmp_path / "outage.svg").read_text(encoding="utf-8"), (
        "regenerate docs/img/simulate-outage.svg: resilient simulate "
        "--policy guarded --scenario outage --out docs/img/simulate-outage.svg"
    )


def test_brownout_with_a_capacity_through_naive_and_guarded():
    naive = simulate_file(POLICIES, "naive", scenario("brownout"), capacity=30)
    guarded = simulate_file(POLICIES, "guarded", scenario("brownout"), capacity=30)
    assert counts(naive) == {
        "requests": 5926,
        "attempts": 13826,
        "outcomes": {"ok": 3460, "failed": 2429, "timed_out": 37},
        "failed": {"overloaded": 2429},
        "rejected": {},
        "retries": 7900,
        "retry_budget_denied": 0,
        "timeouts": 179,
    }
    assert naive.summary().dependency == {"overloaded": 10187, "ok": 3460, "cancelled": 179}
    assert naive.peak_in_flight == 30
    assert guarded.summary().dependency == {"ok": 3036, "overloaded": 239, "cancelled": 102}
    assert guarded.summary().breakers[0].opened == 13


def test_the_docs_pages_command_lines_print_what_they_show(capsys):
    page = (ROOT / "docs" / "simulate.md").read_text(encoding="utf-8")
    runs: list[tuple[list[str], list[str]]] = []
    for line in page.splitlines():
        if line.startswith("$ resilient simulate "):
            runs.append((line.split()[2:], []))
        elif runs and line.startswith("```"):
            runs.append(([], []))  # a block ends: stop collecting
        elif runs and runs[-1][0] and line:
            runs[-1][1].append(line)
    runs = [run for run in runs if run[0]]
    assert len(runs) == 2
    for args, shown in runs:
        assert main(args) == 0
        printed = capsys.readouterr().out.splitlines()
        for line in shown:
            assert line in printed, f"docs/simulate.md: {' '.join(args)} no longer prints {line!r}"
