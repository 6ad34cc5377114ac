//! One batch of Kafka records as the core sees it: events in record order, grouped by customer,
//! with each record's outcome once its customer's write is confirmed.

use std::collections::HashMap;

use ahash::AHashMap;
use compact_str::CompactString;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::wire::{Event, KIND_NAMES};

/// Outcome codes, one per record (the same letters as `store/writer.py`).
pub const APPLIED: u8 = b'a';
pub const DUPLICATE: u8 = b'd';
pub const TOO_LATE: u8 = b'l';
pub const ALREADY_APPLIED: u8 = b's';
pub const ALREADY_REJECTED: u8 = b'L';

/// One batch of Kafka records: decoded events in record order, then grouped by customer.
#[pyclass(module = "stream_features._native")]
pub struct Batch {
    pub(crate) events: Vec<Option<Event>>,
    pub(crate) partitions: Vec<i32>,
    pub(crate) offsets: Vec<i64>,
    pub(crate) fallback: Vec<usize>,
    pub(crate) customers: Vec<String>,
    pub(crate) records_of: Vec<Vec<u32>>,
    pub(crate) position: AHashMap<String, usize>,
    pub(crate) codes: Vec<u8>,
    pub(crate) next_offsets: Vec<(i32, i64)>,
    pub(crate) first_offsets: Vec<(i32, i64)>,
    /// Each record's Kafka timestamp in milliseconds (-1: none), for the end-to-end delay.
    pub(crate) kafka_ms: Vec<i64>,
    /// History loads: each record's row in the files (`file << 40 | row`), for dead letters.
    pub(crate) row_refs: Vec<u64>,
}

#[pymethods]
impl Batch {
    /// Records the fast path left to Python (`decode_event`): each gets `set_event` or nothing.
    fn fallback(&self) -> Vec<usize> {
        self.fallback.clone()
    }

    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (index, kind, customer_id, timestamp, event_id, amount, flag, device, attributes))]
    fn set_event(
        &mut self,
        index: usize,
        kind: &str,
        customer_id: &str,
        timestamp: f64,
        event_id: Option<&str>,
        amount: Option<f64>,
        flag: bool,
        device: Option<&str>,
        attributes: Vec<(String, Vec<u8>)>,
    ) -> PyResult<()> {
        let kind =
            KIND_NAMES.iter().position(|name| *name == kind).ok_or_else(|| PyValueError::new_err(kind.to_owned()))?;
        let slot = self.events.get_mut(index).ok_or_else(|| PyValueError::new_err("record index out of range"))?;
        *slot = Some(Event {
            kind: kind as u8,
            customer_id: customer_id.into(),
            timestamp,
            event_id: event_id.map(CompactString::from),
            amount,
            flag,
            device: device.map(CompactString::from),
            attributes,
        });
        Ok(())
    }

    /// Group the valid events by customer, in record order (call once every record is settled).
    fn finish(&mut self) {
        self.group();
    }

    /// A decoded record's event as `(type, customer_id, timestamp, event_id, amount, flag, device)`,
    /// or None (invalid, or not decoded yet): lets tests compare the fast path with Python's.
    #[allow(clippy::type_complexity)]
    fn event(
        &self,
        index: usize,
    ) -> Option<(&'static str, String, f64, Option<String>, Option<f64>, bool, Option<String>)> {
        let event = self.events.get(index)?.as_ref()?;
        Some((
            KIND_NAMES[usize::from(event.kind)],
            event.customer_id.to_string(),
            event.timestamp,
            event.event_id.as_ref().map(|id| id.to_string()),
            event.amount,
            event.flag,
            event.device.as_ref().map(|device| device.to_string()),
        ))
    }

    /// End-to-end delay of the applied records, acknowledged at `now_ms`: counts per histogram
    /// bucket (`bounds` in seconds, upper bounds, plus one for +Inf) and the sum of the delays.
    fn delays(&self, now_ms: i64, bounds: Vec<f64>) -> (Vec<u64>, f64) {
        let mut counts = vec![0u64; bounds.len() + 1];
        let mut total = 0.0;
        for (&code, &sent) in self.codes.iter().zip(&self.kafka_ms) {
            if code != APPLIED || sent < 0 {
                continue;
            }
            let delay = (now_ms - sent).max(0) as f64 / 1000.0;
            total += delay;
            counts[bounds.partition_point(|&bound| bound < delay)] += 1;
        }
        (counts, total)
    }

    /// A history record's row in the files (`file << 40 | row`), None for Kafka records.
    fn row_ref(&self, index: usize) -> Option<u64> {
        self.row_refs.get(index).copied()
    }

    /// Set a record's source partition and order offset (history rows whose coordinates
    /// Python read).
    fn set_position(&mut self, index: usize, partition: i32, offset: i64) -> PyResult<()> {
        if index >= self.offsets.len() {
            return Err(PyValueError::new_err("record index out of range"));
        }
        self.partitions[index] = partition;
        self.offsets[index] = offset;
        Ok(())
    }

    /// History loads with `--until`: drop the events at or after `until` (the topic has them);
    /// returns how many were dropped. Call before `finish`.
    fn drop_from(&mut self, until: f64) -> usize {
        let mut dropped = 0;
        for event in &mut self.events {
            if event.as_ref().is_some_and(|e| e.timestamp >= until) {
                *event = None;
                dropped += 1;
            }
        }
        dropped
    }

    /// History loads with Kafka coordinates: partition → (lowest offset, highest offset, records)
    /// over every record with a position, valid or not (an invalid record is still one of the
    /// partition's records: the handover must pass it too).
    fn coordinate_ranges(&self) -> HashMap<i32, (i64, i64, u64)> {
        let mut ranges: HashMap<i32, (i64, i64, u64)> = HashMap::new();
        for (&partition, &offset) in self.partitions.iter().zip(&self.offsets) {
            if offset < 0 {
                continue;
            }
            let range = ranges.entry(partition).or_insert((offset, offset, 0));
            range.0 = range.0.min(offset);
            range.1 = range.1.max(offset);
            range.2 += 1;
        }
        ranges
    }

    /// Customers with at least one event from one of `partitions` (grouped batches).
    fn customers_of_partitions(&self, partitions: Vec<i32>) -> Vec<String> {
        self.customers
            .iter()
            .zip(&self.records_of)
            .filter(|(_, records)| records.iter().any(|&r| partitions.contains(&self.partitions[r as usize])))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The record indexes of one customer's events, in record order (empty if none).
    fn records_of(&self, customer: &str) -> Vec<u32> {
        self.position.get(customer).map_or_else(Vec::new, |&at| self.records_of[at].clone())
    }

    /// One outcome code per record ("-": invalid, or not written yet).
    fn codes(&self) -> String {
        self.codes.iter().map(|&code| if code == 0 { '-' } else { char::from(code) }).collect()
    }

    #[getter]
    fn records(&self) -> usize {
        self.events.len()
    }

    #[getter]
    fn customers(&self) -> Vec<String> {
        self.customers.clone()
    }

    /// partition → offset to commit (last record's + 1).
    #[getter]
    fn next_offsets(&self) -> HashMap<i32, i64> {
        self.next_offsets.iter().copied().collect()
    }

    /// partition → offset of its first record in the batch.
    #[getter]
    fn first_offsets(&self) -> HashMap<i32, i64> {
        self.first_offsets.iter().copied().collect()
    }

    #[getter]
    fn newest_event_time(&self) -> f64 {
        self.events.iter().flatten().map(|e| e.timestamp).fold(f64::NEG_INFINITY, f64::max)
    }

    /// Settled outcomes: counts per (event type, outcome), and the records judged too_late.
    fn outcomes(&self) -> (HashMap<(&'static str, &'static str), u64>, Vec<usize>) {
        let mut counts = HashMap::new();
        let mut too_late = Vec::new();
        for (index, (event, code)) in self.events.iter().zip(&self.codes).enumerate() {
            let Some(event) = event else { continue };
            let outcome = match *code {
                APPLIED => "applied",
                DUPLICATE => "duplicate",
                ALREADY_APPLIED => "redelivered",
                TOO_LATE | ALREADY_REJECTED => {
                    too_late.push(index);
                    "invalid"
                }
                _ => continue,
            };
            *counts.entry((KIND_NAMES[usize::from(event.kind)], outcome)).or_insert(0) += 1;
        }
        (counts, too_late)
    }
}

impl Batch {
    /// Group the valid events by customer, in record order.
    pub(crate) fn group(&mut self) {
        for (index, event) in self.events.iter().enumerate() {
            let Some(event) = event else { continue };
            let at = match self.position.get(event.customer_id.as_str()) {
                Some(&at) => at,
                None => {
                    self.position.insert(event.customer_id.to_string(), self.customers.len());
                    self.customers.push(event.customer_id.to_string());
                    self.records_of.push(Vec::new());
                    self.customers.len() - 1
                }
            };
            self.records_of[at].push(index as u32);
        }
    }

    pub(crate) fn with_capacity(count: usize) -> Batch {
        Batch {
            events: Vec::with_capacity(count),
            partitions: Vec::with_capacity(count),
            offsets: Vec::with_capacity(count),
            fallback: Vec::new(),
            customers: Vec::new(),
            records_of: Vec::new(),
            position: AHashMap::new(),
            codes: vec![0; count],
            next_offsets: Vec::new(),
            first_offsets: Vec::new(),
            kafka_ms: Vec::with_capacity(count),
            row_refs: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, event: Option<Event>, partition: i32, offset: i64, kafka_ms: i64) {
        self.events.push(event);
        self.kafka_ms.push(kafka_ms);
        self.partitions.push(partition);
        self.offsets.push(offset);
        // A partition's records arrive in offset order: the last one wins.
        match self.next_offsets.iter_mut().find(|(p, _)| *p == partition) {
            Some((_, next)) => *next = offset + 1,
            None => {
                self.next_offsets.push((partition, offset + 1));
                self.first_offsets.push((partition, offset));
            }
        }
    }
}
