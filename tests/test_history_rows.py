"""History-file rows are validated exactly like Kafka records (SPEC §5a), without services.

A Parquet row is the JSON object of its non-null cells; a CSV row is the JSON object its cells
stand for (``columns.csv_cell``). Generated rows, typed and hostile, go through the loader's
reading (the Rust fast path for typed columns, Python for the rest) and must come out as the
event, or the reason code, that ``validate_event`` gives for that object.
"""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_features.core.events import validate_event
from stream_features.errors import InvalidEvent
from stream_features.history.columns import csv_cell
from stream_features.history.files import SourceFile
from stream_features.history.reading import ReadSettings, read_file

NOW = 1_795_600_000.0
READ = ReadSettings(NOW, 86400.0, coordinates=False, columns={})
TYPES = ("purchase", "session", "cart", "support", "profile", "gift", "", "Purchase")


def _expected(obj: dict[str, Any]) -> tuple[str, Any]:
    try:
        event = validate_event(obj, now=NOW, max_future_skew_seconds=86400.0)
    except InvalidEvent as exc:
        return "invalid", exc.reason
    kind = event.kind
    amount = getattr(event, "amount", None)
    if kind == "session":
        amount = event.duration_seconds  # type: ignore[attr-defined]
    elif kind == "cart":
        amount = event.value  # type: ignore[attr-defined]
    elif kind == "support":
        amount = event.response_time_hours  # type: ignore[attr-defined]
    flag = getattr(event, "converted", None) or getattr(event, "escalated", False)
    device = getattr(event, "device", None)
    return "event", (kind, event.customer_id, event.timestamp, event.event_id, amount, bool(flag), device)


def _outcomes(path: Path, kind: str) -> list[tuple[str, Any]]:
    source = SourceFile(path, kind, None, path.stat().st_size)  # type: ignore[arg-type]
    out: list[tuple[str, Any]] = []
    for chunk in read_file(source, 0, READ):
        dead = {row.row - 1: row.reason for row in chunk.letters}
        for index in range(chunk.batch.records):
            event = chunk.batch.event(index)
            out.append(("invalid", dead[index]) if event is None else ("event", event))
    return out


def _same(got: tuple[str, Any], want: tuple[str, Any]) -> bool:
    if got[0] != want[0]:
        return False
    if got[0] == "invalid":
        return bool(got[1] == want[1])
    a, b = got[1], want[1]
    floats_equal = all(
        (x is None and y is None) or (x is not None and y is not None and (x == y or (math.isnan(x) and math.isnan(y))))
        for x, y in ((a[2], b[2]), (a[4], b[4]))
    )
    return floats_equal and (a[0], a[1], a[3], a[5], a[6]) == (b[0], b[1], b[3], b[5], b[6])


# ----- Parquet: typed columns --------------------------------------------------------------

_TEXT = st.one_of(st.text(max_size=12), st.sampled_from(["c1", " ", "x" * 300, "web", "converted", "abandoned"]))
_NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.5, -2.0, 1e15, 1e16, 3600.0]),
)
_TIMES = st.one_of(
    st.sampled_from(
        [
            "2026-11-26T10:00:00Z",
            "2026-11-26T10:00:00.123456+02:00",
            "2026-11-26",
            "1795600000",
            "1795600000.25",
            "noon",
            "",
            "2026-13-01T00:00:00Z",
            "1e9",
            " 1795600000 ",
            "+01:99",
        ]
    ),
    st.text(max_size=8),
)


@st.composite
def parquet_table(draw: st.DrawFn) -> pa.Table:
    rows = draw(st.integers(1, 25))

    def column(values: st.SearchStrategy[Any], arrow: pa.DataType) -> pa.Array:
        return pa.array([draw(st.one_of(st.none(), values)) for _ in range(rows)], arrow)

    columns: dict[str, pa.Array] = {
        "type": pa.array([draw(st.sampled_from(TYPES)) for _ in range(rows)], pa.string()),
        "customer_id": column(_TEXT, pa.string()),
    }
    timestamp_type = draw(st.sampled_from(["text", "float", "int", "arrow"]))
    if timestamp_type == "text":
        columns["timestamp"] = column(_TIMES, pa.string())
    elif timestamp_type == "float":
        columns["timestamp"] = column(st.floats(-10.0, 3e11), pa.float64())
    elif timestamp_type == "int":
        columns["timestamp"] = column(st.integers(-5, 2**40), pa.int64())
    else:
        moments = st.datetimes(min_value=datetime(1969, 1, 1), max_value=datetime(2027, 1, 1))
        columns["timestamp"] = column(moments, pa.timestamp("us", tz=draw(st.sampled_from([None, "UTC"]))))
    for name in ("amount", "value", "duration_seconds", "response_time_hours"):
        choice = draw(st.sampled_from(["float", "int", "text", "bool", "absent"]))
        if choice == "float":
            columns[name] = column(_NUMBER, pa.float64())
        elif choice == "int":
            columns[name] = column(st.integers(-(2**62), 2**62), pa.int64())
        elif choice == "text":
            columns[name] = column(st.sampled_from(["1", "abc"]), pa.string())
        elif choice == "bool":
            columns[name] = column(st.booleans(), pa.bool_())
    for name in ("event_id", "device", "status", "order_id"):
        if draw(st.booleans()):
            columns[name] = column(_TEXT, pa.string())
    if draw(st.booleans()):
        columns["escalated"] = (
            column(st.booleans(), pa.bool_()) if draw(st.booleans()) else column(st.integers(0, 1), pa.int64())
        )
    if draw(st.booleans()):
        columns["attributes"] = column(st.sampled_from(['{"tier": "gold"}', "[1]", "{bad", '"x"']), pa.string())
    columns["extra"] = column(st.integers(-(2**63), 2**63 - 1), pa.int64())  # ignored like any unknown field
    return pa.table(columns)


def _parquet_object(row: dict[str, Any]) -> dict[str, Any] | None:
    """The row's JSON object; None for a profile whose attributes cell is not JSON text (the
    load names that malformed_json; on other types the cell is an unknown field, ignored)."""
    import json

    obj: dict[str, Any] = {}
    for name, value in row.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            value = (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        if name == "attributes":
            try:
                value = json.loads(value)
            except ValueError:
                if row["type"] == "profile":
                    return None
                continue
        obj[name] = value
    return obj


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=parquet_table())
def test_parquet_rows_are_judged_as_their_json_objects(table: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path)
    got = _outcomes(path, "parquet")
    assert len(got) == table.num_rows
    for row, outcome in zip(table.to_pylist(), got, strict=True):
        obj = _parquet_object(row)
        want = ("invalid", "malformed_json") if obj is None else _expected(obj)
        assert _same(outcome, want), (row, outcome, want)


# ----- CSV: text cells -------------------------------------------------------------------------

_CELLS = st.sampled_from(
    [
        "",
        "12.5",
        "-1",
        "0",
        "-0",
        "1e400",
        "1e-400",
        "abc",
        "00012",
        "5.",
        "true",
        "FALSE",
        "yes",
        "1",
        "2",
        "2026-11-26T10:00:00Z",
        "1795600000",
        "1795600000.5",
        "purchase",
        "session",
        "cart",
        "support",
        "c 1",
        " ",
    ]
)


@st.composite
def csv_rows(draw: st.DrawFn) -> list[dict[str, str]]:
    names = [
        "type",
        "customer_id",
        "timestamp",
        "amount",
        "value",
        "duration_seconds",
        "status",
        "response_time_hours",
        "escalated",
        "device",
        "event_id",
    ]
    rows = []
    for _ in range(draw(st.integers(1, 25))):
        row = {name: draw(_CELLS) for name in names}
        row["type"] = draw(st.sampled_from(TYPES))
        if draw(st.booleans()):
            row["customer_id"] = "c1"
        if draw(st.booleans()):
            row["timestamp"] = draw(st.sampled_from(["2026-11-26T10:00:00Z", "1795600000", "1795500000.25"]))
        rows.append(row)
    return rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=csv_rows())
def test_csv_rows_are_judged_as_the_json_their_cells_stand_for(rows: list[dict[str, str]], tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    got = _outcomes(path, "csv")
    assert len(got) == len(rows)
    for row, outcome in zip(rows, got, strict=True):
        obj = {name: csv_cell(name, text) for name, text in row.items()}
        want = _expected({name: value for name, value in obj.items() if value is not None})
        assert _same(outcome, want), (row, outcome, want)
