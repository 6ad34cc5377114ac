"""Typed rows (Parquet, CSV) as the JSON objects they stand for, and their hand-over to Rust.

A row is read as the JSON object of its non-null event fields (SPEC §2), so it is validated
exactly like a Kafka record: ``decode_columns`` (Rust) takes the rows it is sure of, Python's
``validate_event`` judges the rest and names the reason. Types map as JSON would carry them:
strings → strings, integers and floats (and decimals) → numbers, booleans → booleans, Arrow
timestamps and dates → Unix seconds (naive = UTC); lists, maps and structs are left as Python
values, which the validator refuses where a scalar is due. ``attributes`` is a JSON string
column (or a map/struct column).

CSV has no types: every cell is text and an empty cell is a null (an absent field). A numeric
field's cell is a number when it is a JSON number literal, else it stays text (``bad_type``);
``escalated`` is ``true``/``false`` in any case; ``partition``/``offset`` are digits; other
fields are text (a ``timestamp`` of digits is Unix seconds, as everywhere).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

EVENT_FIELDS: Final = (
    "type",
    "customer_id",
    "timestamp",
    "event_id",
    "amount",
    "value",
    "order_id",
    "duration_seconds",
    "device",
    "status",
    "response_time_hours",
    "escalated",
    "attributes",
)
COORDINATES: Final = ("partition", "offset")
REQUIRED_COLUMNS: Final = ("type", "customer_id", "timestamp")
NUMERIC_FIELDS: Final = frozenset({"amount", "value", "duration_seconds", "response_time_hours"})
# Rows forced to Python (a CSV cell that is not what its field's type needs).
PYTHON_COLUMN: Final = "__python"

_JSON_NUMBER: Final = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
_UNIX_DIGITS: Final = r"^[0-9]{1,20}(\.[0-9]{1,20})?$"
_DIGITS: Final = r"^[0-9]{1,18}$"
_UNITS_PER_SECOND: Final = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
_json: Final = msgspec.json.Decoder(float_hook=float)
_JSON_NUMBER_RE: Final = re.compile(_JSON_NUMBER)
_DIGITS_RE: Final = re.compile(_DIGITS)

ColumnSpec = tuple[str, str, Any, Any, Any, int, float]


# ----- Arrow arrays → the Rust core -----------------------------------------------------------


def column_spec(name: str, array: pa.Array) -> ColumnSpec:
    """One column as ``decode_columns`` reads it: (name, kind, validity, buffer, buffer,
    offset, units per second). Arrays are cast to one of a few layouts first."""
    kind, array, per_second = _normalise(array)
    if kind in ("absent", "other"):
        return (name, kind, _validity(array), None, None, array.offset, 1.0)
    buffers = array.buffers()
    if kind in ("str", "large_str"):
        return (name, kind, _validity(array), buffers[1], buffers[2], array.offset, 1.0)
    return (name, kind, _validity(array), buffers[1], None, array.offset, per_second)


def _validity(array: pa.Array) -> pa.Buffer | None:
    return array.buffers()[0] if array.null_count else None


def _normalise(array: pa.Array) -> tuple[str, pa.Array, float]:
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if pa.types.is_null(kind) or array.null_count == len(array):
        return "absent", array, 1.0
    if pa.types.is_string(kind):
        return "str", array, 1.0
    if pa.types.is_large_string(kind):
        return "large_str", array, 1.0
    if pa.types.is_string_view(kind):
        return "large_str", array.cast(pa.large_string()), 1.0
    if pa.types.is_boolean(kind):
        return "bool", array, 1.0
    if pa.types.is_integer(kind):
        try:
            return "i64", array.cast(pa.int64()), 1.0
        except pa.ArrowInvalid:  # uint64 beyond int64: Python judges those rows
            return "other", array, 1.0
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "f64", array.cast(pa.float64()), 1.0
    if pa.types.is_timestamp(kind):
        return "seconds", array.cast(pa.int64()), _UNITS_PER_SECOND[kind.unit]
    if pa.types.is_date(kind):
        return "seconds", array.cast(pa.date32()).cast(pa.int32()).cast(pa.int64()), 1 / 86400
    return "other", array, 1.0


# ----- CSV text → typed arrays ----------------------------------------------------------------


def type_csv_columns(batch: pa.RecordBatch) -> pa.RecordBatch:
    """CSV's text cells typed by field (module doc); cells that are not their field's type keep
    the row for Python (``PYTHON_COLUMN``), which reads them with ``csv_cell``."""
    arrays: list[pa.Array] = []
    names: list[str] = []
    to_python = pa.array([False] * batch.num_rows)
    for name in batch.schema.names:
        column = batch.column(name)
        if name in NUMERIC_FIELDS or name in ("escalated", *COORDINATES):
            typed, bad = _typed(name, column)
            to_python = pc.or_(to_python, bad)
        elif name == "timestamp":
            typed = _unix_digits_as_numbers(column)
        else:
            typed = column
        arrays.append(typed)
        names.append(name)
    arrays.append(to_python)
    names.append(PYTHON_COLUMN)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _typed(name: str, column: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(typed column with nulls where the text is not of the type, rows whose text is not)."""
    present = pc.is_valid(column)
    if name == "escalated":
        lower = pc.utf8_lower(column)
        ok = pc.fill_null(pc.or_(pc.equal(lower, "true"), pc.equal(lower, "false")), False)
        typed = pc.if_else(ok, pc.equal(lower, "true"), pa.scalar(None, pa.bool_()))
    else:
        pattern, kind = (_DIGITS, pa.int64()) if name in COORDINATES else (_JSON_NUMBER, pa.float64())
        ok = pc.fill_null(pc.match_substring_regex(column, pattern), False)
        typed = pc.cast(pc.if_else(ok, column, pa.scalar(None, pa.string())), kind)
    return typed, pc.and_(present, pc.invert(ok))


def _unix_digits_as_numbers(column: pa.Array) -> pa.Array:
    """A timestamp column of digits (Unix seconds, as everywhere) as numbers, so the fast path
    takes them; a column with any other text stays text (one Arrow array has one type)."""
    digits = pc.fill_null(pc.match_substring_regex(column, _UNIX_DIGITS), True)
    return pc.cast(column, pa.float64()) if pc.all(digits).as_py() else column


def csv_cell(name: str, text: str | None) -> Any:
    """One CSV cell as its JSON value (module doc); the rule ``type_csv_columns`` vectorises."""
    if text is None or text == "":
        return None
    if name in NUMERIC_FIELDS:
        return _json.decode(text) if _JSON_NUMBER_RE.match(text) else text
    if name == "escalated":
        return {"true": True, "false": False}.get(text.lower(), text)
    if name in COORDINATES:
        return int(text) if _DIGITS_RE.match(text) else text
    return text


# ----- rows for Python's validator ------------------------------------------------------------


def row_object(row: Mapping[str, Any], *, csv: bool) -> tuple[dict[str, Any], Any]:
    """A row (from ``to_pylist``) as the JSON object it stands for, and its coordinates pair
    (partition, offset) as given. Null cells are left out, like absent fields."""
    obj: dict[str, Any] = {}
    for name, value in row.items():
        if name == PYTHON_COLUMN:
            continue
        if csv:
            value = csv_cell(name, value)
        if value is None:
            continue
        obj[name] = _json_value(name, value)
    coordinates = (obj.pop("partition", None), obj.pop("offset", None))
    return obj, coordinates


def _json_value(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        from ..core.timeparse import datetime_to_unix

        return datetime_to_unix(value)
    if isinstance(value, date):
        return float((value - date(1970, 1, 1)).days * 86400)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float) and math.isnan(value):
        return value  # the validator names it (non_finite)
    if name == "attributes" and isinstance(value, str):
        try:
            return _json.decode(value)
        except msgspec.DecodeError:
            return _Unparsable(value)
    if name == "attributes" and isinstance(value, list) and all(isinstance(i, tuple) for i in value):
        return dict(value)  # an Arrow map column
    return value


class _Unparsable(str):
    """An ``attributes`` cell that is not JSON (reported as malformed_json, not bad_type)."""
