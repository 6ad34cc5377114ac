"""Writing the same records as JSON Lines, CSV and Parquet for history-load tests.

Each record is a JSON line (as produced to Kafka). Lines that are JSON objects become rows with
one column per field: numbers stay numbers in Parquet (float64), text stays text, timestamps
become one text column (a number's shortest repr, which is Unix seconds as text too), attributes
a JSON text column. Lines that are not objects cannot be rows; they are left out of CSV and
Parquet (``rows_of`` says which lines made it).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

NUMERIC = ("amount", "value", "duration_seconds", "response_time_hours")
TEXT = ("type", "customer_id", "timestamp", "event_id", "order_id", "device", "status", "attributes")


def rows_of(lines: Sequence[bytes]) -> list[tuple[int, dict[str, Any]]]:
    """(line index, row) for every line a typed file can hold: a JSON object whose fields have
    one type per column (what a warehouse export has)."""
    out = []
    for index, line in enumerate(lines):
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            continue
        if not isinstance(obj, dict) or not _typed(obj):
            continue
        out.append((index, obj))
    return out


def _typed(obj: dict[str, Any]) -> bool:
    for name in NUMERIC:
        value = obj.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return False
    for name in TEXT:
        value = obj.get(name)
        if name in ("timestamp", "attributes", "order_id"):
            continue
        if value is not None and not isinstance(value, str):
            return False
    if isinstance(obj.get("order_id"), float):
        return False  # a float order_id is bad_type in JSON, its text would be a fine id
    if not all(_encodable(v) for v in obj.values()):
        return False  # a lone surrogate: no Arrow or CSV text can hold it
    escalated = obj.get("escalated")
    if escalated is not None and not isinstance(escalated, bool):
        return False
    ts = obj.get("timestamp")
    return ts is None or (isinstance(ts, str | int | float) and not isinstance(ts, bool))


def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except (UnicodeEncodeError, ValueError):
        return False
    return True


def _cell(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "attributes":
        return json.dumps(value)
    if name in ("timestamp", "order_id"):
        return value if isinstance(value, str) else repr(value)
    if name in NUMERIC:
        return float(value)
    return value


def write_parquet(path: Path, rows: Sequence[dict[str, Any]], *, extra: dict[str, list[Any]] | None = None) -> None:
    columns: dict[str, pa.Array] = {}
    for name in TEXT:
        columns[name] = pa.array([_cell(name, r.get(name)) for r in rows], pa.string())
    for name in NUMERIC:
        columns[name] = pa.array([_cell(name, r.get(name)) for r in rows], pa.float64())
    columns["escalated"] = pa.array([r.get("escalated") for r in rows], pa.bool_())
    for name, values in (extra or {}).items():
        columns[name] = pa.array(values)
    pq.write_table(pa.table(columns), path, row_group_size=5000)


def write_csv(path: Path, rows: Sequence[dict[str, Any]], *, extra: dict[str, list[Any]] | None = None) -> None:
    names = [*TEXT, *NUMERIC, "escalated", *(extra or {})]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for index, row in enumerate(rows):
            cells = []
            for name in names:
                if extra and name in extra:
                    cells.append(extra[name][index])
                    continue
                value = _cell(name, row.get(name))
                if isinstance(value, bool):
                    value = "true" if value else "false"
                elif isinstance(value, float) and value in (float("inf"), float("-inf")):
                    value = "1e400" if value > 0 else "-1e400"  # how JSON writes a number that large
                cells.append("" if value is None else value if isinstance(value, str) else repr(value))
            writer.writerow(cells)


def write_jsonl(path: Path, lines: Sequence[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
