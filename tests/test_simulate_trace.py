"""Trace files: what they may hold, and errors that name the row and the column."""

from __future__ import annotations

import json

import pytest

import resilient as rs
from resilient.simulate import Trace, TraceError, TraceRow, load_trace, scenario


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_csv_trace(tmp_path):
    path = write(
        tmp_path,
        "calls.csv",
        "# exported from the access log\n"
        "Time, Latency, Outcome, Headers\n"
        "0, 0.05, ok,\n"
        "0.5, 250ms, 503, Retry-After: 2; X-Request-Id: abc\n"
        "\n"
        "1, 1.5s, timeout\n"
        "2, 0.01, 204\n"
        "3, 0.01, ERROR, \n",
    )
    t = load_trace(path)
    assert t.name == "calls"
    assert len(t) == 5
    assert t.rows[0] == TraceRow(time=0.0, latency=0.05)
    assert t.rows[1] == TraceRow(
        time=0.5,
        latency=0.25,
        outcome="503",
        status=503,
        retry_after=2.0,
        headers={"retry-after": "2", "x-request-id": "abc"},
    )
    assert (t.rows[2].outcome, t.rows[2].latency) == ("timeout", 1.5)
    assert (t.rows[3].outcome, t.rows[3].status, t.rows[3].failed) == ("ok", 204, False)
    assert t.rows[4].outcome == "error"
    assert t.duration == 3.0


def test_a_json_trace_as_a_list_or_a_document(tmp_path):
    rows = [
        {"time": 0, "latency": 0.1, "outcome": "ok"},
        {"time": 1, "latency": "20ms", "outcome": 429, "headers": {"Retry-After": 3}},
    ]
    listed = load_trace(write(tmp_path, "a.json", json.dumps(rows)))
    assert listed.rows[1] == TraceRow(
        time=1.0,
        latency=0.02,
        outcome="429",
        status=429,
        retry_after=3.0,
        headers={"retry-after": "3"},
    )
    document = {"name": "incident-42", "description": "what happened", "rows": rows}
    named = load_trace(write(tmp_path, "b.json", json.dumps(document)))
    assert (named.name, named.description, named.rows) == (
        "incident-42",
        "what happened",
        listed.rows,
    )
    # Without a suffix, the content tells.
    assert load_trace(write(tmp_path, "c.trace", json.dumps(rows))).rows == listed.rows
    assert load_trace(rows).rows == listed.rows  # rows given directly


def test_rows_are_sorted_by_time():
    t = Trace((TraceRow(2.0, 0.1), TraceRow(1.0, 0.1, "error"), TraceRow(1.0, 0.2)))
    assert [(r.time, r.latency) for r in t.rows] == [(1.0, 0.1), (1.0, 0.2), (2.0, 0.1)]
    with pytest.raises(TraceError):
        Trace(((0.0, 0.1, "ok"),))  # type: ignore[arg-type]


def test_every_bad_cell_is_reported_with_its_line_row_and_column(tmp_path):
    path = write(
        tmp_path,
        "bad.csv",
        "time,latency,outcome,headers\n"
        "0,0.1,ok,\n"
        "x,0.1,ok,\n"
        "2,-1,ok,\n"
        "3,0.1,302,\n"
        "4,0.1,ok,Retry-After\n"
        "5,0.1,429,Retry-After: soon\n"
        "6,,ok,\n"
        "7,0.1,ok,,extra\n"
        "8,inf,ok,\n",
    )
    with pytest.raises(TraceError) as info:
        load_trace(path)
    err = info.value
    assert isinstance(err, rs.ConfigError)
    assert isinstance(err, ValueError)
    lines = str(err).splitlines()
    assert lines == [
        "8 errors:",
        f"  {path}:3: row 2, column time: expected seconds >= 0 (or '250ms'), got 'x'",
        f"  {path}:4: row 3, column latency: expected seconds >= 0 (or '250ms'), got '-1'",
        f"  {path}:5: row 4, column outcome: expected ok, error, timeout, or an HTTP status "
        "(2xx is ok; 429 or 5xx fails), got '302'",
        f"  {path}:6: row 5, column headers: expected 'Name: value' pairs separated by ';' "
        "(an object in JSON), got 'Retry-After'",
        f"  {path}:7: row 6, column headers: expected Retry-After as seconds >= 0, got 'soon'",
        f"  {path}:8: row 7, column latency: expected a value (the column is required)",
        f"  {path}:9: row 8: expected at most 4 cells (the header's), "
        "got ['7', '0.1', 'ok', '', 'extra']",
        f"  {path}:10: row 9, column latency: expected seconds >= 0 (or '250ms'), got 'inf'",
    ]
    assert [(e.line, e.path) for e in err.errors][:3] == [
        (3, "row 2, column time"),
        (4, "row 3, column latency"),
        (5, "row 4, column outcome"),
    ]


def test_bad_columns(tmp_path):
    with pytest.raises(TraceError, match=r"bad.csv:1: header: expected one of the columns"):
        load_trace(write(tmp_path, "bad.csv", "time,latncy,outcome\n0,0.1,ok\n"))
    with pytest.raises(TraceError, match=r"a column named 'latency'"):
        load_trace(write(tmp_path, "bad.csv", "time,latncy,outcome\n0,0.1,ok\n"))
    with pytest.raises(TraceError, match=r"header: expected a header line"):
        load_trace(write(tmp_path, "empty.csv", "# nothing\n"))
    with pytest.raises(TraceError, match=r"rows: expected at least one row"):
        load_trace(write(tmp_path, "none.csv", "time,latency,outcome\n"))


def test_bad_json(tmp_path):
    with pytest.raises(TraceError, match=r"bad.json:3: document: expected valid JSON"):
        load_trace(write(tmp_path, "bad.json", '[\n {"time": 0,\n ]\n'))
    with pytest.raises(TraceError, match=r"rows: expected a list of rows"):
        load_trace(write(tmp_path, "bad.json", '{"rows": 3}'))
    with pytest.raises(TraceError, match=r"only the keys name, description, phases and rows"):
        load_trace(write(tmp_path, "bad.json", '{"rowz": []}'))
    with pytest.raises(TraceError) as info:
        load_trace(
            write(
                tmp_path,
                "bad.json",
                json.dumps(
                    [
                        {"time": 0, "latency": 0.1, "outcome": True},
                        {"time": 1, "latency": 0.1},
                        {"time": 2, "latency": 0.1, "outcome": "ok", "status": 200},
                        {"time": 3, "latency": 0.1, "outcome": "ok", "headers": ["x"]},
                        7,
                    ]
                ),
            )
        )
    assert [e.path for e in info.value.errors] == [
        "row 1, column outcome",
        "row 2",
        "row 3",
        "row 4, column headers",
        "row 5",
    ]
    with pytest.raises(TraceError, match=r"phase 1: expected \[start seconds, label\]"):
        load_trace(write(tmp_path, "p.json", json.dumps({"phases": [[0]], "rows": []})))
    with pytest.raises(TraceError, match="'csv' or 'json'"):
        load_trace(write(tmp_path, "x.csv", "time,latency,outcome\n"), format="xml")


def test_too_many_errors_are_capped(tmp_path):
    text = "time,latency,outcome\n" + "".join(f"{i},-1,ok\n" for i in range(50))
    with pytest.raises(TraceError) as info:
        load_trace(write(tmp_path, "many.csv", text))
    assert len(info.value.errors) == 20


def test_a_scenario_round_trips_through_csv_and_json(tmp_path):
    original = scenario("rate-limited", seed=3, rate=5)
    as_csv = load_trace(write(tmp_path, "s.csv", original.to_csv()))
    assert as_csv.rows == original.rows
    as_json = load_trace(write(tmp_path, "s.json", original.to_json()))
    assert as_json.rows == original.rows
    assert (as_json.name, as_json.description, as_json.phases) == (
        original.name,
        original.description,
        original.phases,
    )


def test_scenarios_are_validated():
    with pytest.raises(rs.ConfigError, match="outage, brownout"):
        scenario("apocalypse")
    with pytest.raises(rs.ConfigError, match="requests per second"):
        scenario("outage", rate=0)
    assert len(scenario("outage", rate=1)) < len(scenario("outage", rate=5))
    assert scenario("outage", seed=1).rows != scenario("outage", seed=2).rows
    assert scenario("brownout").rows == scenario("brownout").rows
