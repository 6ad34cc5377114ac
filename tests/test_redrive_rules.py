"""redrive's pure parts (no services): which dead letters a filter selects, how a letter is read
from its record, what a still-failing line holds, and one-line errors for bad flags."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from confluent_kafka import Message

from stream_features.errors import ConfigurationError, InvalidEvent
from stream_features.ingest.redrive import (
    REASONS,
    Letter,
    RedriveFilter,
    RedriveReport,
    parse_letter,
    still_failing_line,
)
from stream_features.redrive_cli import render_report


def _letter(**changes: object) -> Letter:
    fields: dict[str, object] = {
        "dlq_partition": 0,
        "dlq_offset": 10,
        "dead_lettered_at": 1_800_000_000.0,
        "key": b"c1",
        "value": b"{}",
        "reason": "future_timestamp",
        "message": "ahead",
        "source_topic": "events",
        "source_partition": 2,
        "source_offset": 500,
    }
    fields.update(changes)
    return Letter(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("selection", "selected"),
    [
        (RedriveFilter(), True),
        (RedriveFilter(reasons=frozenset({"future_timestamp", "too_late"})), True),
        (RedriveFilter(reasons=frozenset({"too_late"})), False),
        (RedriveFilter(source_partition=2, from_offset=500, to_offset=500), True),  # bounds inclusive
        (RedriveFilter(source_partition=1), False),
        (RedriveFilter(from_offset=501), False),
        (RedriveFilter(to_offset=499), False),
        (RedriveFilter(since=1_800_000_000.0, until=1_800_000_000.0), True),
        (RedriveFilter(since=1_800_000_000.5), False),
        (RedriveFilter(until=1_799_999_999.0), False),
    ],
)
def test_filter_bounds(selection: RedriveFilter, selected: bool) -> None:
    assert selection.matches(_letter()) is selected


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"reasons": frozenset({"future_timestmap"})}, "unknown reason future_timestmap"),
        ({"reasons": frozenset({"state_unreadable"})}, "repair"),
        ({"from_offset": 9, "to_offset": 3}, "--from-offset 9 is after --to-offset 3"),
        ({"since": 2.0, "until": 1.0}, "--since is after --until"),
    ],
)
def test_bad_filters_are_refused(options: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        RedriveFilter(**options)  # type: ignore[arg-type]


def test_a_letter_is_read_from_its_record_and_keyed_by_its_source() -> None:
    headers = [
        ("error.reason", b"too_late"),
        ("error.message", b"older than retention"),
        ("source.topic", b"events"),
        ("source.partition", b"3"),
        ("source.offset", b"77"),
    ]
    stamp = (1, 1_800_000_000_250)  # CreateTime, milliseconds
    record = Message(topic="events.dlq", partition=1, offset=9, key=b"c", value=b"{", headers=headers, timestamp=stamp)
    letter = parse_letter(record)
    assert letter is not None
    assert (letter.reason, letter.message, letter.source) == ("too_late", "older than retention", "events:3:77")
    assert (letter.dlq_partition, letter.dlq_offset, letter.dead_lettered_at) == (1, 9, 1_800_000_000.25)
    garbled = Message(topic="events.dlq", partition=0, offset=1, value=b"{", headers=[("source.offset", b"x")])
    assert parse_letter(garbled) is None


def test_still_failing_lines_keep_the_bytes_exactly() -> None:
    text = json.loads(still_failing_line(_letter(value=b'{"a": "\xc3\xa9"}'), InvalidEvent("bad_type", "no")))
    assert text["value"] == '{"a": "é"}' and text["reason"] == "bad_type"
    assert text["original_reason"] == "future_timestamp"
    assert text["source"] == {"topic": "events", "partition": 2, "offset": 500}
    binary = json.loads(still_failing_line(_letter(value=b"\xff\xfe", key=None), InvalidEvent("malformed_json", "no")))
    assert base64.b64decode(binary["value_base64"]) == b"\xff\xfe" and binary["key"] is None
    assert "value" not in binary


def test_reason_codes_are_the_contracts() -> None:
    assert {"future_timestamp", "too_late", "malformed_json", "state_unreadable"} <= REASONS


@pytest.mark.parametrize(
    "args",
    [
        ("--reason", "nope"),
        ("--reason", "state_unreadable"),
        ("--from-offset", "5", "--to-offset", "1"),
        ("--since", "someday"),
        ("--source-partition", "two"),
    ],
)
def test_bad_redrive_flags_are_one_line_errors(args: tuple[str, ...]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stream_features", "redrive", "--bootstrap-servers", "127.0.0.1:1", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "error" in done.stderr


def test_the_report_table_counts_by_reason(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    report = RedriveReport(
        dry_run=True,
        scanned=40,
        matched=31,
        sent_back=20,
        already_sent_back=3,
        still_failing=7,
        sent_back_by_reason={"future_timestamp": 20},
        still_failing_by_reason={"future_timestamp": 2, "malformed_json": 5},
        skipped={"state_unreadable": 1},
    )
    render_report(report)
    out = capsys.readouterr().out
    assert "would send back" in out and "dry run: nothing sent" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 3}
    cells = {name: [cell.strip() for cell in line.split("│")[2:4]] for name, line in rows.items()}
    assert cells["future_timestamp"] == ["20", "2"] and cells["malformed_json"] == ["0", "5"]
    assert cells["total"] == ["20", "7"]
    assert "already sent back earlier: 3" in out and "skipped state_unreadable: 1 (repair applies these)" in out
