"""Traces: what the dependency did, and when requests arrived.

A trace is a list of rows, one per request, in time order:

``time``
    when the request arrives, in seconds from the start of the trace;
``latency``
    how long the dependency takes to answer it (for ``timeout``: how long the
    caller's own connection waits before giving up);
``outcome``
    ``ok``, ``error`` (a failed exchange, e.g. connection refused), ``timeout``
    (no answer: a ``TimeoutError`` after ``latency``), or an HTTP status: a 2xx
    is ``ok``, ``429`` and any 5xx are failures carrying the status;
``headers``
    optional response headers; ``Retry-After`` (seconds) is the server's hint,
    read by retries (and by breakers with ``open_on_retry_after``).

A row describes the dependency *at that moment* too: a retry (or any attempt
that starts later than its request's arrival) gets the answer of the latest row
at or before the moment it starts. The first attempt of a request gets its own
row's answer.

Files: CSV with a header line (``time,latency,outcome,headers``; ``headers`` may
be left out, and holds ``Name: value`` pairs separated by ``;``), or JSON: a
list of row objects, or ``{"name": ..., "description": ..., "rows": [...]}``
(``headers`` is then an object). Durations may be numbers of seconds or strings
such as ``"250ms"``. Every bad value is reported at once, naming the file, the
line (CSV), the row and the column.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._duration import to_seconds
from .._errors import _MISSING, ConfigError

__all__ = ["Trace", "TraceError", "TraceRow", "load_trace", "parse_outcome"]

COLUMNS = ("time", "latency", "outcome", "headers")
_REQUIRED = ("time", "latency", "outcome")
_OUTCOME_EXPECTED = "ok, error, timeout, or an HTTP status (2xx is ok; 429 or 5xx fails)"
_MAX_ERRORS = 20


class TraceError(ConfigError):
    """A trace file (or trace rows) could not be read; names the file, line, row and column.

    Like every :class:`~resilient.ConfigError` it is a ``ValueError``; when a file has
    several problems, ``errors`` holds one ``TraceError`` per problem (the first 20).
    """


@dataclass(frozen=True, slots=True)
class TraceRow:
    """One request of a trace, and the dependency's answer to it.

    Attributes:
        time: arrival, in seconds from the start of the trace.
        latency: seconds the dependency takes to answer (or, for ``timeout``, to give up).
        outcome: ``"ok"``, ``"error"``, ``"timeout"``, or an HTTP status as a string
            (``"429"``, ``"503"``; a 2xx is stored as ``"ok"`` with its ``status``).
        status: the HTTP status, when the row gave one.
        retry_after: the ``Retry-After`` header in seconds, if any.
        headers: every header of the row (names lowercased).
    """

    time: float
    latency: float
    outcome: str = "ok"
    status: int | None = None
    retry_after: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Whether the dependency fails this request."""
        return self.outcome != "ok"

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-friendly values (the JSON trace format)."""
        out: dict[str, Any] = {
            "time": self.time,
            "latency": self.latency,
            "outcome": str(self.status) if self.status is not None else self.outcome,
        }
        if self.headers:
            out["headers"] = dict(self.headers)
        return out


@dataclass(frozen=True, slots=True)
class Trace:
    """A sequence of :class:`TraceRow`, sorted by time (stable for equal times).

    Attributes:
        rows: the requests, in arrival order.
        name: a short name (a scenario's, or the file's stem).
        description: one line saying what happens in it.
        phases: ``(start, label)`` marks of what the dependency does when (the bundled
            scenarios set them; the chart shows them).
    """

    rows: tuple[TraceRow, ...]
    name: str = "trace"
    description: str = ""
    phases: tuple[tuple[float, str], ...] = ()

    def __post_init__(self) -> None:
        rows = tuple(self.rows)
        if any(not isinstance(row, TraceRow) for row in rows):
            raise TraceError("rows", self.rows, "TraceRow objects")
        if any(a.time > b.time for a, b in itertools.pairwise(rows)):
            rows = tuple(sorted(rows, key=lambda row: row.time))
        object.__setattr__(self, "rows", rows)

    @property
    def duration(self) -> float:
        """The time of the last arrival (0 for an empty trace)."""
        return self.rows[-1].time if self.rows else 0.0

    def __len__(self) -> int:
        return len(self.rows)

    def to_csv(self) -> str:
        """The trace in the CSV format :func:`load_trace` reads."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in self.rows:
            data = row.as_dict()
            headers = "; ".join(f"{k}: {v}" for k, v in row.headers.items())
            writer.writerow([_num(row.time), _num(row.latency), data["outcome"], headers])
        return out.getvalue()

    def to_json(self) -> str:
        """The trace in the JSON format :func:`load_trace` reads."""
        document: dict[str, Any] = {"name": self.name}
        if self.description:
            document["description"] = self.description
        if self.phases:
            document["phases"] = [[start, label] for start, label in self.phases]
        document["rows"] = [row.as_dict() for row in self.rows]
        return json.dumps(document, indent=1)


def _num(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def parse_outcome(value: object) -> tuple[str, int | None]:
    """``(outcome, status)`` for a trace's outcome cell; raises ``ValueError`` if invalid."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip().lower()
    else:
        raise ValueError(value)
    if text in ("ok", "error", "timeout"):
        return text, None
    if text.isdigit() and len(text) == 3:
        status = int(text)
        if 200 <= status < 300:
            return "ok", status
        if status == 429 or 500 <= status < 600:
            return text, status
    raise ValueError(value)


def _parse_headers(value: object) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for name, item in value.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(value)
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise ValueError(value)
            out[name.strip().lower()] = str(item).strip()
        return out
    if not isinstance(value, str):
        raise ValueError(value)
    out = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        name, sep, item = part.partition(":")
        if not sep or not name.strip():
            raise ValueError(value)
        out[name.strip().lower()] = item.strip()
    return out


class _Reader:
    """Turns raw cells into rows, collecting every error."""

    def __init__(self, file: str | None) -> None:
        self.file = file
        self.errors: list[ConfigError] = []

    def fail(self, where: str, value: object, expected: str, line: int | None) -> None:
        if len(self.errors) < _MAX_ERRORS:
            self.errors.append(TraceError(where, value, expected, file=self.file, line=line))

    def row(self, number: int, cells: Mapping[str, object], line: int | None) -> TraceRow | None:
        where = f"row {number}"
        ok = True
        missing = [name for name in _REQUIRED if cells.get(name) in (None, "")]
        for name in missing:
            self.fail(f"{where}, column {name}", _MISSING, "a value (the column is required)", line)
        if missing:
            return None
        values: dict[str, Any] = {}
        for name in ("time", "latency"):
            raw = cells[name]
            try:
                seconds = to_seconds(raw, name=name)
            except ConfigError:
                self.fail(f"{where}, column {name}", raw, "seconds >= 0 (or '250ms')", line)
                ok = False
                continue
            values[name] = seconds
        try:
            outcome, status = parse_outcome(cells["outcome"])
        except ValueError:
            self.fail(f"{where}, column outcome", cells["outcome"], _OUTCOME_EXPECTED, line)
            ok = False
            outcome, status = "ok", None
        headers: dict[str, str] = {}
        raw_headers = cells.get("headers")
        try:
            headers = _parse_headers(raw_headers)
        except ValueError:
            self.fail(
                f"{where}, column headers",
                raw_headers,
                "'Name: value' pairs separated by ';' (an object in JSON)",
                line,
            )
            ok = False
        retry_after = None
        if "retry-after" in headers:
            raw = headers["retry-after"]
            try:
                retry_after = float(raw)
                if not (math.isfinite(retry_after) and retry_after >= 0):
                    raise ValueError(raw)
            except ValueError:
                self.fail(f"{where}, column headers", raw, "Retry-After as seconds >= 0", line)
                ok = False
        if not ok:
            return None
        return TraceRow(
            time=values["time"],
            latency=values["latency"],
            outcome=outcome,
            status=status,
            retry_after=retry_after,
            headers=headers,
        )

    def columns(self, names: Iterable[str], where: str, line: int | None) -> bool:
        names = list(names)
        good = True
        for name in names:
            if name not in COLUMNS:
                self.fail(where, name, f"one of the columns {', '.join(COLUMNS)}", line)
                good = False
        for name in _REQUIRED:
            if name not in names:
                self.fail(where, _MISSING, f"a column named {name!r}", line)
                good = False
        return good

    def done(
        self,
        rows: list[TraceRow],
        name: str,
        description: str = "",
        phases: tuple[tuple[float, str], ...] = (),
    ) -> Trace:
        if self.errors:
            raise TraceError.combine(self.errors)
        if not rows:
            raise TraceError("rows", _MISSING, "at least one row", file=self.file)
        return Trace(tuple(rows), name=name, description=description, phases=phases)


def _from_csv(text: str, reader: _Reader, name: str) -> Trace:
    lines = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    rows: list[TraceRow] = []
    number = 0
    for record in lines:
        line = lines.line_num
        if not record or all(not cell.strip() for cell in record):
            continue
        if record[0].lstrip().startswith("#"):
            continue  # a comment line
        if header is None:
            header = [cell.strip().lower() for cell in record]
            if not reader.columns(header, "header", line):
                break
            continue
        number += 1
        if len(record) > len(header):
            reader.fail(
                f"row {number}", record, f"at most {len(header)} cells (the header's)", line
            )
            continue
        cells = dict(zip(header, (cell.strip() for cell in record), strict=False))
        row = reader.row(number, cells, line)
        if row is not None:
            rows.append(row)
    if header is None:
        reader.fail("header", _MISSING, "a header line: time,latency,outcome[,headers]", 1)
    return reader.done(rows, name)


def _from_json(text: str, reader: _Reader, name: str) -> Trace:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(
            "document", exc.msg, "valid JSON", file=reader.file, line=exc.lineno
        ) from None
    description = ""
    phases: list[tuple[float, str]] = []
    if isinstance(document, Mapping):
        unknown = sorted(set(document) - {"name", "description", "phases", "rows"})
        if unknown:
            raise TraceError(
                unknown[0],
                _MISSING,
                "only the keys name, description, phases and rows",
                file=reader.file,
            )
        name = str(document.get("name") or name)
        description = str(document.get("description") or "")
        for index, item in enumerate(document.get("phases") or [], start=1):
            if not (
                isinstance(item, list)
                and len(item) == 2
                and isinstance(item[0], int | float)
                and not isinstance(item[0], bool)
                and isinstance(item[1], str)
            ):
                reader.fail(f"phase {index}", item, "[start seconds, label]", None)
                continue
            phases.append((float(item[0]), item[1]))
        document = document.get("rows")
    if not isinstance(document, list):
        raise TraceError(
            "rows", document, "a list of rows ({time, latency, outcome, headers})", file=reader.file
        )
    rows: list[TraceRow] = []
    for index, item in enumerate(document, start=1):
        if not isinstance(item, Mapping):
            reader.fail(f"row {index}", item, "an object {time, latency, outcome, headers}", None)
            continue
        if not reader.columns(item, f"row {index}", None):
            continue
        row = reader.row(index, item, None)
        if row is not None:
            rows.append(row)
    return reader.done(rows, name, description, tuple(phases))


def load_trace(
    source: str | os.PathLike[str] | Sequence[Mapping[str, Any]],
    format: str | None = None,
) -> Trace:
    """Read a trace from a CSV or JSON file (or from rows given as mappings).

    Args:
        source: a path, or a list of row mappings (``{"time": 0, "latency": 0.05,
            "outcome": "ok"}``).
        format: ``"csv"`` or ``"json"``; ``None``: from the file's suffix (a file
            whose text starts with ``[`` or ``{`` is read as JSON).

    Raises:
        TraceError: naming the file, line, row and column of every bad value.
        OSError: the file cannot be read.
    """
    if not isinstance(source, str | os.PathLike):
        reader = _Reader(None)
        rows = []
        for index, item in enumerate(source, start=1):
            if not isinstance(item, Mapping):
                reader.fail(f"row {index}", item, "a mapping", None)
                continue
            if reader.columns(item, f"row {index}", None):
                row = reader.row(index, item, None)
                if row is not None:
                    rows.append(row)
        return reader.done(rows, "trace")
    path = Path(source)
    text = path.read_text(encoding="utf-8-sig")
    if format is None:
        suffix = path.suffix.lower()
        if suffix in (".csv", ".json"):
            format = suffix[1:]
        else:
            format = "json" if text.lstrip()[:1] in ("[", "{") else "csv"
    reader = _Reader(str(source))
    if format == "csv":
        return _from_csv(text, reader, path.stem)
    if format == "json":
        return _from_json(text, reader, path.stem)
    raise TraceError("format", format, "'csv' or 'json'")
