"""Which files a history load reads, in which order, and how each is opened.

Formats by name: JSON Lines (``.jsonl``, ``.ndjson``, ``.json``), CSV (``.csv``) and Parquet
(``.parquet``, ``.pq``); JSON Lines and CSV may be compressed (``.gz``, ``.zst``). The order is
the one the contract names (SPEC §5a): the paths as given, a folder's files sorted by path.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigurationError

Format = Literal["jsonl", "csv", "parquet"]
_FORMATS: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}


class UnreadableFile(ConfigurationError):
    """A file the load cannot read at all (missing, not its format, a required column missing)."""


@dataclass(frozen=True)
class SourceFile:
    path: Path
    format: Format
    compression: str | None  # pyarrow codec name
    size: int  # bytes on disk

    @property
    def name(self) -> str:
        return str(self.path)

    def open(self) -> IO[bytes]:
        """The file's bytes, decompressed."""
        try:
            raw = pa.OSFile(str(self.path), "rb")
            stream = pa.CompressedInputStream(raw, self.compression) if self.compression else raw
        except (OSError, pa.ArrowException) as exc:
            raise UnreadableFile(f"{self.path}: {exc}") from None
        return io.BufferedReader(_RawStream(stream), buffer_size=1 << 20)

    def parquet(self) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(str(self.path))
        except (OSError, pa.ArrowException) as exc:
            raise UnreadableFile(f"{self.path}: not a readable Parquet file ({exc})") from None

    def header(self) -> list[str]:
        """A CSV file's column names (its first record)."""
        with self.open() as stream:
            first = stream.readline(1 << 20)
        try:
            return next(csv.reader([first.decode("utf-8-sig")]), [])
        except (UnicodeDecodeError, csv.Error) as exc:
            raise UnreadableFile(f"{self.path}: the first line is not a CSV header ({exc})") from None


class _RawStream(io.RawIOBase):
    """A pyarrow input stream as a Python binary stream."""

    def __init__(self, stream: pa.NativeFile) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._stream.read(len(buffer))
        except (OSError, pa.ArrowException) as exc:
            raise UnreadableFile(f"cannot read: {exc}") from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()


def format_of(path: Path) -> tuple[Format, str | None] | None:
    suffixes = [s.lower() for s in path.suffixes]
    compression = _COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    kind = _FORMATS.get(suffixes[-1]) if suffixes else None
    if kind is None or (kind == "parquet" and compression):
        return None
    return kind, compression


def discover(paths: Sequence[str | Path]) -> list[SourceFile]:
    """Every file to load, in load order. A path given by name must be a known format; a
    folder contributes its known files (recursively, sorted by path) and skips the rest."""
    found: list[SourceFile] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found += [_source(p) for p in sorted(path.rglob("*")) if p.is_file() and format_of(p)]
        elif path.is_file():
            found.append(_source(path))
        else:
            raise UnreadableFile(f"{path}: no such file or folder")
    if not found:
        raise UnreadableFile(f"no JSON Lines, CSV or Parquet files in {', '.join(map(str, paths))}")
    return found


def _source(path: Path) -> SourceFile:
    kind = format_of(path)
    if kind is None:
        known = ", ".join(sorted(_FORMATS))
        raise UnreadableFile(f"{path}: unknown format (known: {known}, JSON Lines and CSV also .gz or .zst)")
    return SourceFile(path, kind[0], kind[1], path.stat().st_size)


def load_identity(files: Sequence[SourceFile]) -> str:
    """A default name for a load: the same files (names and sizes, in order) give the same name,
    so running the same load again, also from another folder, finds what it already applied."""
    digest = hashlib.sha256()
    for source in files:
        digest.update(f"{source.path.name}\0{source.size}\n".encode())
    return digest.hexdigest()[:16]


def read_blocks(source: SourceFile, block_bytes: int) -> Iterator[bytes]:
    """A JSON Lines file in blocks of whole lines (a line longer than a block grows the block)."""
    with source.open() as stream:
        carry = b""
        while True:
            data = stream.read(block_bytes)
            if not data:
                if carry:
                    yield carry
                return
            data = carry + data
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            carry = data[cut + 1 :]
            yield data[: cut + 1]
