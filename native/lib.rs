//! `stream_features._native`: the consumer's per-event work in Rust.
//!
//! Python keeps everything that talks to Kafka and Redis and everything that judges invalid
//! events; this module decodes the common valid events, applies them to cached customer states
//! with the same rules as `customer_state.py`, and builds the compare-and-set calls of
//! `cas.lua` as ready-to-send RESP. See `stream_features/store/native_writer.py`.

mod resp;
mod state;
mod store;
mod tiles;
mod timestamp;
mod wire;

use std::collections::HashMap;

use ahash::AHashMap;
use compact_str::CompactString;

// Many small allocations per event (ids, tiles, arguments): mimalloc serves them much faster
// than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use resp::{pack_command, Args};
use state::{Changes, Outcome, Settings};
use store::{tiles_key, Number, StoredCustomer};
use wire::{Event, KIND_NAMES};

const APPLIED: u8 = b'a';
const DUPLICATE: u8 = b'd';
const TOO_LATE: u8 = b'l';
const ALREADY_APPLIED: u8 = b's';
const ALREADY_REJECTED: u8 = b'L';
const TTL_REFRESH_SECONDS: f64 = 86_400.0;

/// One batch of Kafka records: decoded events in record order, then grouped by customer.
#[pyclass(module = "stream_features._native")]
pub struct Batch {
    events: Vec<Option<Event>>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    fallback: Vec<usize>,
    customers: Vec<String>,
    records_of: Vec<Vec<u32>>,
    position: AHashMap<String, usize>,
    codes: Vec<u8>,
    next_offsets: Vec<(i32, i64)>,
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
    fn with_capacity(count: usize) -> Batch {
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
        }
    }

    fn push(&mut self, event: Option<Event>, partition: i32, offset: i64) {
        self.events.push(event);
        self.partitions.push(partition);
        self.offsets.push(offset);
        // A partition's records arrive in offset order: the last one wins.
        match self.next_offsets.iter_mut().find(|(p, _)| *p == partition) {
            Some((_, next)) => *next = offset + 1,
            None => self.next_offsets.push((partition, offset + 1)),
        }
    }
}

struct Call {
    customers: Vec<usize>,
    keys: Vec<String>,
    args: Args,
    codes: Vec<Vec<u8>>,
}

/// Compare-and-set calls computed against the cached states, ready to send.
#[pyclass(module = "stream_features._native")]
pub struct Prepared {
    calls: Vec<Call>,
    names: Vec<String>,
}

#[pymethods]
impl Prepared {
    fn __len__(&self) -> usize {
        self.calls.len()
    }

    /// Every customer of these calls.
    #[getter]
    fn customers(&self) -> Vec<String> {
        self.names.clone()
    }

    /// Calls `start..stop` (all by default) as pipelined `EVALSHA sha numkeys keys... args...`.
    #[pyo3(signature = (sha, start=0, stop=None))]
    fn packed<'py>(&self, py: Python<'py>, sha: &str, start: usize, stop: Option<usize>) -> Bound<'py, PyBytes> {
        let calls = &self.calls[start.min(self.calls.len())..stop.unwrap_or(self.calls.len()).min(self.calls.len())];
        let mut out = Vec::with_capacity(calls.iter().map(|call| call.args.buf.len() + 256).sum());
        for call in calls {
            let numkeys = call.keys.len().to_string();
            let mut head: Vec<&[u8]> = vec![b"EVALSHA", sha.as_bytes(), numkeys.as_bytes()];
            head.extend(call.keys.iter().map(|key| key.as_bytes()));
            pack_command(&mut out, &head, &call.args);
        }
        PyBytes::new(py, &out)
    }

    /// One call's keys and arguments (for clients that route commands themselves).
    #[allow(clippy::type_complexity)]
    fn call<'py>(
        &self,
        py: Python<'py>,
        index: usize,
    ) -> PyResult<(Vec<Bound<'py, PyBytes>>, Vec<Bound<'py, PyBytes>>)> {
        let call = self.calls.get(index).ok_or_else(|| PyValueError::new_err("call index out of range"))?;
        let keys = call.keys.iter().map(|key| PyBytes::new(py, key.as_bytes())).collect();
        let args = call.args.split().into_iter().map(|arg| PyBytes::new(py, arg)).collect();
        Ok((keys, args))
    }
}

/// The consumer's cached customer states and what it does with them.
#[pyclass(module = "stream_features._native")]
pub struct Core {
    settings: Settings,
    topic: String,
    prefix: String,
    key_ttl_seconds: i64,
    customers_per_call: usize,
    cache: AHashMap<String, StoredCustomer>,
    cache_size: usize,
    clock: u64,
    sources: AHashMap<i32, String>,
    changes: Changes,
    scratch: Vec<u8>,
}

fn pairs<'py>(reply: &Bound<'py, PyAny>) -> PyResult<Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>> {
    if let Ok(mapping) = reply.cast::<PyDict>() {
        return mapping.iter().map(|(k, v)| Ok((k.cast_into::<PyBytes>()?, v.cast_into::<PyBytes>()?))).collect();
    }
    let items: Vec<Bound<'py, PyBytes>> =
        reply.cast::<PyList>()?.iter().map(|item| Ok(item.cast_into::<PyBytes>()?)).collect::<PyResult<_>>()?;
    if !items.len().is_multiple_of(2) {
        return Err(PyValueError::new_err("HGETALL reply has an odd length"));
    }
    let mut items = items.into_iter();
    let mut out = Vec::new();
    while let (Some(field), Some(value)) = (items.next(), items.next()) {
        out.push((field, value));
    }
    Ok(out)
}

impl Core {
    fn prepare_batch(&mut self, batch: &Batch, customers: Option<Vec<String>>, now: f64) -> PyResult<Prepared> {
        let chosen: Vec<usize> = match customers {
            None => (0..batch.customers.len()).collect(),
            Some(names) => names
                .iter()
                .map(|name| batch.position.get(name).copied().ok_or_else(|| PyKeyError::new_err(name.clone())))
                .collect::<PyResult<_>>()?,
        };
        for &partition in &batch.partitions {
            let topic = &self.topic;
            self.sources.entry(partition).or_insert_with(|| format!("{topic}:{partition}"));
        }
        let sources = std::mem::take(&mut self.sources);
        let prepared = self.build_calls(batch, &chosen, now, &sources);
        self.sources = sources;
        if prepared.is_err() {
            // Their cached states may be half-updated: reload them next time.
            for &at in &chosen {
                self.cache.remove(&batch.customers[at]);
            }
        }
        self.evict();
        prepared
    }

    fn build_calls(
        &mut self,
        batch: &Batch,
        chosen: &[usize],
        now: f64,
        sources: &AHashMap<i32, String>,
    ) -> PyResult<Prepared> {
        let mut calls = Vec::new();
        let mut names = Vec::with_capacity(chosen.len());
        for group in chosen.chunks(self.customers_per_call) {
            let mut call = Call {
                customers: group.to_vec(),
                keys: Vec::with_capacity(2 * group.len()),
                args: Args::default(),
                codes: Vec::with_capacity(group.len()),
            };
            call.args.push_number(b"", self.key_ttl_seconds);
            for &at in group {
                let (main, aux) = self.keys_of(&batch.customers[at]);
                call.keys.push(main);
                call.keys.push(aux);
                call.codes.push(self.prepare_customer(batch, at, now, sources, &mut call.args)?);
                names.push(batch.customers[at].clone());
            }
            calls.push(call);
        }
        Ok(Prepared { calls, names })
    }

    fn evict(&mut self) {
        if self.cache.len() <= self.cache_size {
            return;
        }
        // Least recently used first, down to 90% so this runs rarely.
        let keep = self.cache_size * 9 / 10;
        if keep == 0 {
            self.cache.clear();
            return;
        }
        let mut ages: Vec<u64> = self.cache.values().map(|c| c.last_used).collect();
        let cut = ages.len() - keep; // < len, as len > cache_size >= keep > 0
        let threshold = *ages.select_nth_unstable(cut).1;
        self.cache.retain(|_, c| c.last_used >= threshold);
    }

    /// Apply one customer's events to its cached state and append its call arguments.
    fn prepare_customer(
        &mut self,
        batch: &Batch,
        at: usize,
        now: f64,
        sources: &AHashMap<i32, String>,
        args: &mut Args,
    ) -> PyResult<Vec<u8>> {
        let name = &batch.customers[at];
        let records = &batch.records_of[at];
        self.clock += 1;
        let settings = self.settings;
        let changes = &mut self.changes;
        changes.clear();
        let stored = self.cache.get_mut(name).ok_or_else(|| PyKeyError::new_err(format!("{name} is not loaded")))?;
        stored.last_used = self.clock;
        let mut codes = Vec::with_capacity(records.len());
        for &record in records {
            let record = record as usize;
            let source = &sources[&batch.partitions[record]];
            let offset = batch.offsets[record];
            let event = batch.events[record].as_ref().expect("grouped records hold events");
            if offset <= stored.offset(source) {
                codes.push(if stored.was_rejected(source, offset) { ALREADY_REJECTED } else { ALREADY_APPLIED });
                continue;
            }
            stored.set_offset(source, offset);
            codes.push(match stored.state.apply(event, &settings, changes) {
                Outcome::Applied => APPLIED,
                Outcome::Duplicate => DUPLICATE,
                Outcome::TooLate => {
                    stored.remember_reject(source, offset);
                    TOO_LATE
                }
            });
        }
        let refresh = now - stored.ttl_set_at.as_f64() >= TTL_REFRESH_SECONDS;
        if refresh {
            stored.ttl_set_at = Number::Int(now as i64);
        }
        stored.write_arguments(changes, refresh, args, &mut self.scratch);
        stored.version += 1; // optimistic: settle() forgets the customer if the write is refused
        Ok(codes)
    }
}

#[pymethods]
impl Core {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (*, topic, prefix, tile_seconds, retention_tiles, tiles_per_day, dedup_horizon_seconds, key_ttl_seconds, customers_per_call, cache_size))]
    fn new(
        topic: String,
        prefix: String,
        tile_seconds: i64,
        retention_tiles: i64,
        tiles_per_day: i64,
        dedup_horizon_seconds: f64,
        key_ttl_seconds: i64,
        customers_per_call: usize,
        cache_size: usize,
    ) -> Self {
        Core {
            settings: Settings {
                tile_seconds: tile_seconds as f64,
                retention_tiles,
                tiles_per_day,
                dedup_horizon_seconds,
            },
            topic,
            prefix,
            key_ttl_seconds,
            customers_per_call: customers_per_call.max(1),
            cache: AHashMap::new(),
            cache_size,
            clock: 0,
            sources: AHashMap::new(),
            changes: Changes::default(),
            scratch: Vec::new(),
        }
    }

    /// Decode Kafka messages (objects with `value()`, `partition()`, `offset()`).
    fn decode(&self, records: &Bound<'_, PyList>, now: f64, max_future_skew_seconds: f64) -> PyResult<Batch> {
        let py = records.py();
        let mut values = Vec::with_capacity(records.len());
        let mut positions = Vec::with_capacity(records.len());
        for message in records.iter() {
            let partition: i32 = message.call_method0(intern!(py, "partition"))?.extract::<Option<i32>>()?.unwrap_or(0);
            let offset: i64 = message.call_method0(intern!(py, "offset"))?.extract::<Option<i64>>()?.unwrap_or(0);
            values.push(message.call_method0(intern!(py, "value"))?.cast_into::<PyBytes>().ok());
            positions.push((partition, offset));
        }
        let slices: Vec<Option<&[u8]>> =
            values.iter().map(|value| value.as_ref().map(|bytes| bytes.as_bytes())).collect();
        // The bytes objects are immutable and held above: parse them without the GIL, so the
        // writer thread can read Redis replies meanwhile.
        Ok(py.detach(|| {
            let mut batch = Batch::with_capacity(slices.len());
            for (index, (value, (partition, offset))) in slices.iter().zip(positions).enumerate() {
                let event = value.and_then(|data| wire::decode(data, now, max_future_skew_seconds));
                if event.is_none() {
                    batch.fallback.push(index);
                }
                batch.push(event, partition, offset);
            }
            batch
        }))
    }

    /// A batch of records at these positions with no events yet (fill with `set_event`).
    fn empty_batch(&self, partitions: Vec<i32>, offsets: Vec<i64>) -> PyResult<Batch> {
        if partitions.len() != offsets.len() {
            return Err(PyValueError::new_err("one partition per offset expected"));
        }
        let mut batch = Batch::with_capacity(offsets.len());
        for (partition, offset) in partitions.into_iter().zip(offsets) {
            batch.push(None, partition, offset);
        }
        Ok(batch)
    }

    /// Customers of the batch (or of `customers`) whose state is not cached.
    #[pyo3(signature = (batch, customers=None))]
    fn missing(&self, batch: &Batch, customers: Option<Vec<String>>) -> Vec<String> {
        let wanted = customers.unwrap_or_else(|| batch.customers.clone());
        wanted.into_iter().filter(|c| !self.cache.contains_key(c)).collect()
    }

    /// The customer's tiles hash and bookkeeping hash.
    fn keys_of(&self, customer: &str) -> (String, String) {
        let main = tiles_key(&self.prefix, customer);
        let aux = format!("{main}:x");
        (main, aux)
    }

    /// `HGETALL` of both hashes of each customer, as pipelined RESP.
    fn load_commands<'py>(&self, py: Python<'py>, customers: Vec<String>) -> Bound<'py, PyBytes> {
        let mut out = Vec::new();
        let none = Args::default();
        for customer in &customers {
            let (main, aux) = self.keys_of(customer);
            pack_command(&mut out, &[b"HGETALL", main.as_bytes()], &none);
            pack_command(&mut out, &[b"HGETALL", aux.as_bytes()], &none);
        }
        PyBytes::new(py, &out)
    }

    /// Cache a customer from its two HGETALL replies (flat lists or dicts of bytes).
    fn load(&mut self, customer: String, main: &Bound<'_, PyAny>, aux: &Bound<'_, PyAny>) -> PyResult<()> {
        let (main, aux) = (pairs(main)?, pairs(aux)?);
        let stored = StoredCustomer::load(
            main.iter().map(|(f, v)| (f.as_bytes(), v.as_bytes())),
            aux.iter().map(|(f, v)| (f.as_bytes(), v.as_bytes())),
        )
        .map_err(|e| PyValueError::new_err(format!("customer {customer}: corrupt stored state: {}", e.0)))?;
        self.cache.insert(customer, stored);
        Ok(())
    }

    /// Apply the batch's events (of every customer, or of `customers`) to the cached states
    /// and build the calls. Every customer must be cached (see `missing`/`load`).
    #[pyo3(signature = (batch, customers, now))]
    fn prepare(
        mut slf: PyRefMut<'_, Self>,
        batch: PyRef<'_, Batch>,
        customers: Option<Vec<String>>,
        now: f64,
    ) -> PyResult<Prepared> {
        let py = slf.py();
        let core: &mut Core = &mut slf;
        let batch: &Batch = &batch;
        // Pure Rust from here: let the writer thread run while this works.
        py.detach(|| core.prepare_batch(batch, customers, now))
    }

    /// Record the outcomes of written customers in the batch; forget and return the others
    /// (reply `None`: the call did not run; "0" at a customer's place: version mismatch).
    fn settle(
        &mut self,
        mut batch: PyRefMut<'_, Batch>,
        prepared: &Prepared,
        replies: Vec<Option<String>>,
    ) -> PyResult<Vec<String>> {
        if replies.len() != prepared.calls.len() {
            return Err(PyValueError::new_err("one reply per call expected"));
        }
        let mut conflicted = Vec::new();
        for (call, reply) in prepared.calls.iter().zip(replies) {
            let flags = reply.as_deref().unwrap_or("").as_bytes();
            for (place, (&at, codes)) in call.customers.iter().zip(&call.codes).enumerate() {
                if flags.get(place) == Some(&b'1') {
                    for (&record, &code) in batch.records_of[at].clone().iter().zip(codes) {
                        batch.codes[record as usize] = code;
                    }
                } else {
                    let name = batch.customers[at].clone();
                    self.cache.remove(&name);
                    conflicted.push(name);
                }
            }
        }
        Ok(conflicted)
    }

    /// Drop cached states (their next use reloads from Redis).
    fn forget(&mut self, customers: Vec<String>) {
        for customer in customers {
            self.cache.remove(&customer);
        }
    }

    #[getter]
    fn cached(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(cache_size: usize) -> Core {
        Core::new("t".into(), "sf".into(), 3600, 9600, 24, 604_800.0, 0, 64, cache_size)
    }

    #[test]
    fn eviction_keeps_the_most_recently_used() {
        for cache_size in [0, 1, 10] {
            let mut core = core(cache_size);
            for age in 0..25u64 {
                let customer = StoredCustomer { last_used: age, ..StoredCustomer::default() };
                core.cache.insert(format!("c{age}"), customer);
            }
            core.evict();
            let kept = cache_size * 9 / 10;
            assert_eq!(core.cache.len(), kept);
            assert!((25 - kept as u64..25).all(|age| core.cache.contains_key(&format!("c{age}"))));
        }
    }
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Core>()?;
    module.add_class::<Batch>()?;
    module.add_class::<Prepared>()?;
    Ok(())
}
