"""The dead-letter file of a history load: one JSON object per invalid row, with the stream's
reason codes (SPEC §5), where the row is, and the row itself."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import msgspec

from .reading import DeadRow

_encoder = msgspec.json.Encoder()


def _jsonable(value: Any) -> Any:
    """Rows from Parquet may hold values JSON has no form for (bytes, dates, decimals)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and value != value:  # NaN
        return "NaN"
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class DeadRowFile:
    """Writes dead rows as JSON Lines (a run rewrites the file: it lists that run's rows)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self.count = 0

    def write(self, rows: list[DeadRow]) -> None:
        if not rows or self.path is None:
            self.count += len(rows)
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("wb")
        for row in rows:
            entry: dict[str, Any] = {"file": row.file, "row": row.row, "reason": row.reason, "message": row.message}
            if row.partition is not None:
                entry["partition"], entry["offset"] = row.partition, row.offset
            entry["record"] = _jsonable(row.record)
            try:
                line = _encoder.encode(entry)
            except (TypeError, msgspec.EncodeError, OverflowError):
                entry["record"] = str(row.record)[:65536]
                line = _encoder.encode(entry)
            self._file.write(line + b"\n")
        self.count += len(rows)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
