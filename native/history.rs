//! History loads (`stream-features backfill`): decoding file rows into batches, and the spill
//! that regroups them by customer.
//!
//! A load reads its files once, decodes every row (JSON Lines with the stream's own decoder,
//! Parquet and CSV rows through `columns.rs`) and scatters the valid events to bucket files on
//! disk by a hash of the customer id. Each bucket is then read back whole, put in the order the
//! contract names (SPEC §5a: file order, or offset order per partition), and written customer
//! by customer: every customer's history in one pass, memory bounded by one bucket.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use compact_str::CompactString;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::batch::Batch;
use crate::columns::{Column, EventColumns, Offsets, Values};
use crate::wire::{self, Event, Scalar};

/// Bits of a row reference that hold the row (the file's index is above them).
pub const ROW_BITS: u32 = 40;

/// Lines of JSON Lines data: each non-blank line is a record, decoded exactly as a Kafka
/// record's value. Returns the batch (`fallback()` lists lines for Python to judge) and the
/// byte range of each fallback line. Rows are numbered from `first_row`; without coordinates a
/// record's order offset is `order_base + row`, with them it is read from the line's
/// `partition` and `offset` fields (lines without both go to Python too).
#[pyfunction]
#[pyo3(signature = (data, *, file_index, first_row, order_base, coordinates, now, max_future_skew_seconds))]
#[allow(clippy::too_many_arguments)]
pub fn decode_lines(
    py: Python<'_>,
    data: &[u8],
    file_index: u64,
    first_row: u64,
    order_base: i64,
    coordinates: bool,
    now: f64,
    max_future_skew_seconds: f64,
) -> (Batch, Vec<(usize, usize)>) {
    py.detach(|| {
        let mut batch = Batch::with_capacity(data.len() / 128);
        let mut spans = Vec::new();
        let mut row = first_row;
        let mut start = 0;
        while start < data.len() {
            let end = data[start..].iter().position(|&b| b == b'\n').map_or(data.len(), |at| start + at);
            let mut line = &data[start..end];
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            // Blank lines are skipped, as `produce` skips them (bytes.strip()'s whitespace).
            if !line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c')) {
                let decoded =
                    std::panic::catch_unwind(|| wire::decode(line, now, max_future_skew_seconds)).ok().flatten();
                let (partition, offset) =
                    if coordinates { position_of(line).unwrap_or((0, -1)) } else { (0, order_base + row as i64) };
                let event = decoded.filter(|_| offset >= 0);
                if event.is_none() {
                    batch.fallback.push(batch.events.len());
                    spans.push((start, start + line.len()));
                }
                batch.row_refs.push(file_index << ROW_BITS | row);
                batch.push(event, partition, offset, -1);
            }
            row += 1;
            start = end + 1;
        }
        (batch, spans)
    })
}

/// A line's `partition` and `offset` fields, when both are whole numbers in range.
fn position_of(line: &[u8]) -> Option<(i32, i64)> {
    #[derive(serde::Deserialize)]
    struct Position {
        partition: Option<i64>,
        offset: Option<i64>,
    }
    let position: Position = serde_json::from_slice(line).ok()?;
    let partition = i32::try_from(position.partition?).ok().filter(|p| *p >= 0)?;
    Some((partition, position.offset.filter(|o| *o >= 0)?))
}

/// One Arrow column from Python: (field name, kind, validity, first buffer, second buffer,
/// array offset, units per second). Kinds: "str" (offsets, data), "large_str" (offsets, data),
/// "f64", "i64", "bool", "seconds" (int64 values / units per second), "other", "absent".
type ColumnSpec = (String, String, Option<Py<PyAny>>, Option<Py<PyAny>>, Option<Py<PyAny>>, usize, f64);

fn buffer(py: Python<'_>, object: &Option<Py<PyAny>>) -> PyResult<Option<PyBuffer<i8>>> {
    object.as_ref().map(|o| PyBuffer::<i8>::get(o.bind(py))).transpose()
}

fn bytes_of(buffer: &Option<PyBuffer<i8>>) -> &[u8] {
    match buffer {
        // pyarrow exports its buffers as signed bytes ("b"); they are read as raw bytes.
        // SAFETY: the PyBuffer keeps the exporter's memory alive and unchanged while held, and
        // it is held (below, in `decode_columns`) for as long as these slices are used.
        Some(b) if b.len_bytes() > 0 => unsafe { std::slice::from_raw_parts(b.buf_ptr() as *const u8, b.len_bytes()) },
        _ => &[],
    }
}

/// Rows of a typed record batch (Parquet, or CSV after `history/columns.py` typed it). The
/// `partition` and `offset` columns, when given, are the rows' Kafka coordinates.
#[pyfunction]
#[pyo3(signature = (columns, rows, *, file_index, first_row, order_base, now, max_future_skew_seconds))]
#[allow(clippy::too_many_arguments)]
pub fn decode_columns(
    py: Python<'_>,
    columns: Vec<ColumnSpec>,
    rows: usize,
    file_index: u64,
    first_row: u64,
    order_base: i64,
    now: f64,
    max_future_skew_seconds: f64,
) -> PyResult<Batch> {
    let mut held = Vec::with_capacity(columns.len());
    for (name, kind, valid, first, second, offset, per_second) in &columns {
        held.push((name, kind, buffer(py, valid)?, buffer(py, first)?, buffer(py, second)?, *offset, *per_second));
    }
    let mut events = EventColumns::default();
    let (mut partitions, mut offsets, mut forced) = (None, None, None);
    for (name, kind, valid, first, second, offset, per_second) in &held {
        let (a, b) = (bytes_of(first), bytes_of(second));
        let values = match kind.as_str() {
            "str" => Values::Str { offsets: Offsets::Small(a), data: b },
            "large_str" => Values::Str { offsets: Offsets::Large(a), data: b },
            "f64" => Values::F64(a),
            "i64" => Values::I64(a),
            "bool" => Values::Bool(a),
            "seconds" => Values::Seconds { values: a, per_second: *per_second },
            "other" => Values::Other,
            "absent" => Values::Absent,
            other => return Err(PyValueError::new_err(format!("unknown column kind {other}"))),
        };
        let column = Column { valid: valid.is_some().then(|| bytes_of(valid)), offset: *offset, values };
        match name.as_str() {
            "partition" => partitions = Some(column),
            "offset" => offsets = Some(column),
            // Rows whose cells are not their field's type (CSV): Python reads and judges them.
            "__python" => forced = Some(column),
            other => {
                events.set(other, column);
            }
        }
    }
    let coordinates = partitions.is_some() || offsets.is_some();
    Ok(py.detach(|| {
        let mut batch = Batch::with_capacity(rows);
        for row in 0..rows {
            let (partition, offset) = if coordinates {
                let partition = partitions.and_then(|c| c.integer(row)).and_then(|p| i32::try_from(p).ok());
                match (partition, offsets.and_then(|c| c.integer(row))) {
                    (Some(p), Some(o)) if p >= 0 && o >= 0 => (p, o),
                    _ => (0, -1),
                }
            } else {
                (0, order_base + row as i64)
            };
            let event = std::panic::catch_unwind(|| wire::validate(events.row(row), now, max_future_skew_seconds))
                .ok()
                .flatten()
                .filter(|_| offset >= 0 && !forced.is_some_and(|c| matches!(c.scalar(row), Some(Scalar::Bool(true)))));
            if event.is_none() {
                batch.fallback.push(row);
            }
            batch.row_refs.push(file_index << ROW_BITS | (first_row + row as u64));
            batch.push(event, partition, offset, -1);
        }
        batch
    }))
}

// ----- the spill ---------------------------------------------------------------------------

/// FNV-1a: a hash that is the same on every machine and release, so a re-run of a load puts
/// every customer in the same bucket.
fn stable_hash(text: &str, seed: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &byte in text.as_bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// One record in a bucket file (length-prefixed, little-endian).
fn encode(out: &mut Vec<u8>, event: &Event, partition: i32, offset: i64, row_ref: u64) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&partition.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&row_ref.to_le_bytes());
    let flags = u8::from(event.flag)
        | u8::from(event.amount.is_some()) << 1
        | u8::from(event.event_id.is_some()) << 2
        | u8::from(event.device.is_some()) << 3;
    out.extend_from_slice(&[event.kind, flags]);
    out.extend_from_slice(&event.timestamp.to_le_bytes());
    out.extend_from_slice(&event.amount.unwrap_or(0.0).to_le_bytes());
    put_str(out, &event.customer_id);
    if let Some(id) = &event.event_id {
        put_str(out, id);
    }
    if let Some(device) = &event.device {
        put_str(out, device);
    }
    out.extend_from_slice(&(event.attributes.len() as u32).to_le_bytes());
    for (key, value) in &event.attributes {
        put_str(out, key);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    let length = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let part = self.data.get(self.at..self.at + count)?;
        self.at += count;
        Some(part)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn text(&mut self) -> Option<&'a str> {
        let length = u32::from_le_bytes(self.array()?) as usize;
        std::str::from_utf8(self.take(length)?).ok()
    }
}

struct Spilled {
    partition: i32,
    offset: i64,
    row_ref: u64,
    event: Event,
}

fn decode(record: &[u8]) -> Option<Spilled> {
    let mut r = Reader { data: record, at: 0 };
    let partition = i32::from_le_bytes(r.array()?);
    let offset = i64::from_le_bytes(r.array()?);
    let row_ref = u64::from_le_bytes(r.array()?);
    let [kind, flags] = r.array()?;
    let timestamp = f64::from_le_bytes(r.array()?);
    let amount = f64::from_le_bytes(r.array()?);
    let customer_id = CompactString::from(r.text()?);
    let event_id = if flags & 4 != 0 { Some(CompactString::from(r.text()?)) } else { None };
    let device = if flags & 8 != 0 { Some(CompactString::from(r.text()?)) } else { None };
    let count = u32::from_le_bytes(r.array()?) as usize;
    let mut attributes = Vec::with_capacity(count);
    for _ in 0..count {
        let key = r.text()?.to_owned();
        let length = u32::from_le_bytes(r.array()?) as usize;
        attributes.push((key, r.take(length)?.to_vec()));
    }
    let amount = (flags & 2 != 0).then_some(amount);
    let event = Event { kind, customer_id, timestamp, event_id, amount, flag: flags & 1 != 0, device, attributes };
    Some(Spilled { partition, offset, row_ref, event })
}

fn os_error(what: &str, error: std::io::Error) -> PyErr {
    PyOSError::new_err(format!("{what}: {error}"))
}

/// Valid events scattered to bucket files by customer, read back one bucket at a time.
#[pyclass(module = "stream_features._native")]
pub struct Spill {
    dir: PathBuf,
    writers: Vec<Option<BufWriter<File>>>,
    events: Vec<u64>,
    seeds: Vec<u64>,
    /// Buckets the scatter hashes into (the first ones; splits append more).
    scatter: u64,
    scratch: Vec<u8>,
}

impl Spill {
    fn path(&self, bucket: usize) -> PathBuf {
        self.dir.join(format!("bucket-{bucket:05}.bin"))
    }

    fn open(&mut self, seed: u64) -> PyResult<usize> {
        let bucket = self.writers.len();
        let file = File::create(self.path(bucket)).map_err(|e| os_error("cannot create a spill file", e))?;
        self.writers.push(Some(BufWriter::with_capacity(1 << 16, file)));
        self.events.push(0);
        self.seeds.push(seed);
        Ok(bucket)
    }

    fn write(&mut self, bucket: usize, spilled: &Spilled) -> PyResult<()> {
        self.scratch.clear();
        encode(&mut self.scratch, &spilled.event, spilled.partition, spilled.offset, spilled.row_ref);
        let writer = self.writers[bucket].as_mut().ok_or_else(|| PyValueError::new_err("bucket already read"))?;
        writer.write_all(&self.scratch).map_err(|e| os_error("cannot write a spill file", e))?;
        self.events[bucket] += 1;
        Ok(())
    }

    fn read_all(&mut self, bucket: usize) -> PyResult<Vec<Spilled>> {
        if let Some(mut writer) = self.writers.get_mut(bucket).and_then(Option::take) {
            writer.flush().map_err(|e| os_error("cannot write a spill file", e))?;
        }
        let path = self.path(bucket);
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|file| BufReader::new(file).read_to_end(&mut data))
            .map_err(|e| os_error("cannot read a spill file", e))?;
        let _ = fs::remove_file(&path);
        let mut out = Vec::with_capacity(self.events[bucket] as usize);
        let mut at = 0;
        while at < data.len() {
            let length = data.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize);
            let record = length.and_then(|n| data.get(at + 4..at + 4 + n));
            let spilled = record.and_then(decode).ok_or_else(|| PyValueError::new_err("corrupt spill file"))?;
            out.push(spilled);
            at += 4 + length.unwrap_or(0);
        }
        Ok(out)
    }
}

#[pymethods]
impl Spill {
    /// `buckets` bucket files in `directory` (which must exist and is the caller's to remove).
    #[new]
    fn new(directory: PathBuf, buckets: usize) -> PyResult<Self> {
        let mut spill = Spill {
            dir: directory,
            writers: Vec::new(),
            events: Vec::new(),
            seeds: Vec::new(),
            scatter: buckets.max(1) as u64,
            scratch: Vec::new(),
        };
        for _ in 0..buckets.max(1) {
            spill.open(0)?;
        }
        Ok(spill)
    }

    /// Scatter the batch's valid events (records without an event are left out).
    fn add(&mut self, py: Python<'_>, batch: &Batch) -> PyResult<()> {
        py.detach(|| {
            for (index, event) in batch.events.iter().enumerate() {
                let Some(event) = event else { continue };
                let bucket = (stable_hash(&event.customer_id, 0) % self.scatter) as usize;
                let spilled = Spilled {
                    partition: batch.partitions[index],
                    offset: batch.offsets[index],
                    row_ref: batch.row_refs.get(index).copied().unwrap_or(0),
                    event: event.clone(),
                };
                self.write(bucket, &spilled)?;
            }
            Ok(())
        })
    }

    /// Events spilled to each bucket so far.
    #[getter]
    fn sizes(&self) -> Vec<u64> {
        self.events.clone()
    }

    /// Whether a bucket came from a split (it is not split again: one customer's history can
    /// be larger than any bucket size, and must be read whole).
    fn was_split(&self, bucket: usize) -> bool {
        self.seeds.get(bucket).is_some_and(|&seed| seed > 0)
    }

    /// Split a bucket too large to read at once into `parts` new buckets (by another hash of
    /// the customer, so each customer still lands in exactly one); returns their numbers.
    fn split(&mut self, py: Python<'_>, bucket: usize, parts: usize) -> PyResult<Vec<usize>> {
        let records = self.read_all(bucket)?;
        let seed = self.seeds[bucket] + 1;
        let parts = parts.max(2);
        let mut numbers = Vec::with_capacity(parts);
        for _ in 0..parts {
            numbers.push(self.open(seed)?);
        }
        py.detach(|| {
            for spilled in &records {
                let part = numbers[(stable_hash(&spilled.event.customer_id, seed) % parts as u64) as usize];
                self.write(part, spilled)?;
            }
            Ok(numbers.clone())
        })
    }

    /// Read a bucket back (and delete its file) as a batch in the contract's order: by source
    /// partition, then offset (file order without coordinates), grouped by customer.
    fn take(&mut self, py: Python<'_>, bucket: usize) -> PyResult<Batch> {
        let mut records = self.read_all(bucket)?;
        Ok(py.detach(|| {
            // Stable: two rows claiming the same coordinates keep their file order.
            records.sort_by_key(|r| (r.partition, r.offset));
            let mut batch = Batch::with_capacity(records.len());
            for spilled in records {
                batch.row_refs.push(spilled.row_ref);
                batch.push(Some(spilled.event), spilled.partition, spilled.offset, -1);
            }
            batch.group();
            batch
        }))
    }
}
