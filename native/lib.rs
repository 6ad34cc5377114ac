//! `stream_features._native`: the consumer's per-event work in Rust.
//!
//! Python keeps everything that talks to Kafka and Redis and everything that judges invalid
//! events; this module decodes the common valid events, applies them to cached customer states
//! with the same rules as `customer_state.py`, and builds the compare-and-set calls of
//! `cas.lua` as ready-to-send RESP. See `stream_features/store/writer.py`.

mod batch;
mod build_info;
mod columns;
mod features;
mod history;
mod prepared;
mod resp;
mod state;
mod store;
mod tiles;
mod timestamp;
mod wire;

use std::collections::HashMap;

use ahash::AHashMap;
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use batch::{Batch, ALREADY_APPLIED, ALREADY_REJECTED, APPLIED, DUPLICATE, TOO_LATE};
use prepared::{Call, Prepared};
use resp::{pack_command, Args};
use state::{Changes, Outcome, Settings};
use store::{tiles_key, Number, StoredCustomer};

// Many small allocations per event (ids, tiles, arguments): mimalloc serves them much faster
// than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TTL_REFRESH_SECONDS: f64 = 86_400.0;

/// What a customer write costs Redis inside `cas.lua`, by the model the call budget uses (README
/// "Write calls and their budget"): a fixed part per customer write (the script's header parse
/// and argument handling, `HGET v`, the bookkeeping `HSET`, `EXPIRE`s), one per field set or
/// deleted, and the bytes copied into Lua and back. Fitted to the mean `EVALSHA` times Redis's
/// command statistics showed in `bench/mixed_load.py` on the project's 2-core machines.
const WRITE_COST_US: f64 = 18.0;
const FIELD_COST_US: f64 = 1.0;
const BYTES_PER_US: f64 = 1500.0;
/// The script call's own cost (EVALSHA dispatch, KEYS and ARGV set-up).
const CALL_COST_US: f64 = 25.0;

fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One customer's write (or a part of it, when its events would exceed the budget), built
/// before it is placed in a call.
struct Part {
    end: usize,
    codes: Vec<u8>,
    args: Args,
    cost_us: f64,
}

/// The consumer's cached customer states and what it does with them.
#[pyclass(module = "stream_features._native")]
pub struct Core {
    settings: Settings,
    topic: String,
    prefix: String,
    key_ttl_seconds: i64,
    customers_per_call: usize,
    call_budget_us: f64,
    cache: AHashMap<String, StoredCustomer>,
    cache_bytes: usize,
    cache_limit_bytes: usize,
    clock: u64,
    versions: u64,
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
                let name = batch.customers[at].clone();
                self.cache_remove(&name);
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
        let mut call = self.new_call(false);
        for &at in chosen {
            let (main, aux) = self.keys_of(&batch.customers[at]);
            let records = batch.records_of[at].len();
            let mut renewed: Vec<String> = Vec::new();
            let mut start = 0;
            while start < records {
                let part = self.prepare_part(batch, at, start, now, sources, &mut renewed)?;
                let full = call.customers.len() >= self.customers_per_call
                    || (!call.customers.is_empty() && call.cost_us + part.cost_us > self.call_budget_us);
                if full {
                    // A customer's later part starting a call continues the one before: same
                    // connection, in order (its version follows the previous part's).
                    let continues = start > 0 && call.customers.last() == Some(&at);
                    calls.push(std::mem::replace(&mut call, self.new_call(continues)));
                }
                call.keys.push(main.clone());
                call.keys.push(aux.clone());
                call.args.buf.extend_from_slice(&part.args.buf);
                call.args.count += part.args.count;
                call.customers.push(at);
                call.ranges.push((start as u32, part.end as u32));
                call.codes.push(part.codes);
                call.cost_us += part.cost_us;
                start = part.end;
            }
            names.push(batch.customers[at].clone());
        }
        if !call.customers.is_empty() {
            calls.push(call);
        }
        Ok(Prepared { calls, names })
    }

    fn new_call(&self, continues: bool) -> Call {
        let mut call = Call {
            customers: Vec::new(),
            ranges: Vec::new(),
            keys: Vec::new(),
            args: Args::default(),
            codes: Vec::new(),
            cost_us: CALL_COST_US,
            continues,
        };
        call.args.push_number(b"", self.key_ttl_seconds);
        call
    }

    fn evict(&mut self) {
        if self.cache_bytes <= self.cache_limit_bytes {
            return;
        }
        // Least recently used first, down to 90% of the limit so this runs rarely.
        let keep = self.cache_limit_bytes / 10 * 9;
        let mut ages: Vec<(u64, usize)> = self.cache.values().map(|c| (c.last_used, c.bytes)).collect();
        ages.sort_unstable_by_key(|&(age, _)| std::cmp::Reverse(age));
        let mut kept = 0;
        let mut threshold = u64::MAX;
        for (age, bytes) in ages {
            if kept + bytes > keep {
                break;
            }
            kept += bytes;
            threshold = age;
        }
        self.cache.retain(|_, c| c.last_used >= threshold);
        self.cache_bytes = self.cache.values().map(|c| c.bytes).sum();
    }

    fn cache_insert(&mut self, customer: String, mut stored: StoredCustomer) {
        stored.bytes = stored.approximate_bytes(&customer);
        self.cache_bytes += stored.bytes;
        if let Some(old) = self.cache.insert(customer, stored) {
            self.cache_bytes -= old.bytes;
        }
    }

    fn cache_remove(&mut self, customer: &str) {
        if let Some(old) = self.cache.remove(customer) {
            self.cache_bytes -= old.bytes;
        }
    }

    /// Apply a customer's events from record `start` on to its cached state, until they are
    /// all applied or their write would exceed the call budget (at least one event), and build
    /// that write's arguments.
    fn prepare_part(
        &mut self,
        batch: &Batch,
        at: usize,
        start: usize,
        now: f64,
        sources: &AHashMap<i32, String>,
        renewed: &mut Vec<String>,
    ) -> PyResult<Part> {
        let name = &batch.customers[at];
        let records = &batch.records_of[at];
        self.clock += 1;
        let settings = self.settings;
        let changes = &mut self.changes;
        changes.clear();
        let stored = self.cache.get_mut(name).ok_or_else(|| PyKeyError::new_err(format!("{name} is not loaded")))?;
        stored.last_used = self.clock;
        // Fields are counted as they change; their bytes only once written: reckon 64 a field
        // (a tile with its name is 16 to 120 bytes, an event id with its time 16 to 140).
        let per_field = FIELD_COST_US + 64.0 / BYTES_PER_US;
        let field_limit = ((self.call_budget_us - CALL_COST_US - WRITE_COST_US) / per_field).max(1.0) as usize;
        let mut codes = Vec::new();
        let mut end = start;
        for &record in &records[start..] {
            end += 1;
            let record = record as usize;
            let source = &sources[&batch.partitions[record]];
            let offset = batch.offsets[record];
            let event = batch.events[record].as_ref().expect("grouped records hold events");
            if offset <= stored.offset(source) {
                codes.push(if stored.was_rejected(source, offset) { ALREADY_REJECTED } else { ALREADY_APPLIED });
                continue;
            }
            if !renewed.iter().any(|r| r == source) {
                // This batch's too_late offsets of this partition replace the last batch's,
                // whose dead letters were acknowledged before this batch was sent; replayed
                // records (above) are still judged against them.
                stored.forget_rejects(source);
                renewed.push(source.clone());
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
            if changes.fields() >= field_limit {
                break;
            }
        }
        let refresh = now - stored.ttl_set_at.as_f64() >= TTL_REFRESH_SECONDS;
        if refresh {
            stored.ttl_set_at = Number::Int(now as i64);
        }
        let mut args = Args::default();
        // Versions are unique tokens, not counters: a customer's later part expects the one its
        // earlier part writes, which no other writer can have written (a counter could collide).
        self.versions = splitmix64(self.versions);
        let version = (self.versions >> 1).max(1);
        let stored = self.cache.get_mut(name).expect("looked up above");
        stored.write_arguments(&self.changes, refresh, version, &mut args, &mut self.scratch);
        stored.version = version; // optimistic: settle() forgets the customer if the write is refused
        let changes = &self.changes;
        let bytes = stored.approximate_bytes(name);
        self.cache_bytes = self.cache_bytes + bytes - stored.bytes;
        stored.bytes = bytes;
        let cost_us = WRITE_COST_US + FIELD_COST_US * changes.fields() as f64 + args.buf.len() as f64 / BYTES_PER_US;
        Ok(Part { end, codes, args, cost_us })
    }
}

#[pymethods]
impl Core {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (*, topic, prefix, tile_seconds, retention_tiles, tiles_per_day, dedup_horizon_seconds, max_attributes, max_devices_per_tile, max_event_ids, key_ttl_seconds, customers_per_call, call_budget_us, cache_limit_bytes))]
    fn new(
        topic: String,
        prefix: String,
        tile_seconds: i64,
        retention_tiles: i64,
        tiles_per_day: i64,
        dedup_horizon_seconds: f64,
        max_attributes: usize,
        max_devices_per_tile: usize,
        max_event_ids: usize,
        key_ttl_seconds: i64,
        customers_per_call: usize,
        call_budget_us: f64,
        cache_limit_bytes: usize,
    ) -> Self {
        Core {
            settings: Settings {
                tile_seconds: tile_seconds as f64,
                retention_tiles,
                tiles_per_day,
                dedup_horizon_seconds,
                max_attributes,
                max_devices_per_tile,
                max_event_ids,
            },
            topic,
            prefix,
            key_ttl_seconds,
            customers_per_call: customers_per_call.max(1),
            call_budget_us,
            cache: AHashMap::new(),
            cache_bytes: 0,
            cache_limit_bytes,
            versions: ahash::RandomState::new().hash_one(std::process::id()),
            clock: 0,
            sources: AHashMap::new(),
            changes: Changes::default(),
            scratch: Vec::new(),
        }
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
        self.cache_insert(customer, stored);
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
        let mut conflicted: Vec<String> = Vec::new();
        let Batch { records_of, codes: outcome_codes, customers, .. } = &mut *batch;
        for (call, reply) in prepared.calls.iter().zip(replies) {
            let flags = reply.as_deref().unwrap_or("").as_bytes();
            for (place, ((&at, &(start, end)), codes)) in
                call.customers.iter().zip(&call.ranges).zip(&call.codes).enumerate()
            {
                if flags.get(place) == Some(&b'1') {
                    let records = &records_of[at][start as usize..end as usize];
                    for (&record, &code) in records.iter().zip(codes) {
                        let slot = &mut outcome_codes[record as usize];
                        // A redo after a later part failed finds the earlier parts applied:
                        // they keep the outcome they were written with.
                        if *slot == 0 || code != ALREADY_APPLIED {
                            *slot = code;
                        }
                    }
                } else if !conflicted.contains(&customers[at]) {
                    let name = customers[at].clone();
                    self.cache_remove(&name);
                    conflicted.push(name);
                }
            }
        }
        Ok(conflicted)
    }

    /// Drop cached states (their next use reloads from Redis).
    fn forget(&mut self, customers: Vec<String>) {
        for customer in customers {
            self.cache_remove(&customer);
        }
    }

    /// Drop every cached state (Redis went back in time: the cache may be ahead of it).
    fn forget_all(&mut self) {
        self.cache.clear();
        self.cache_bytes = 0;
    }

    /// The name per-customer offsets are kept under (`"<name>:<partition>"`): the topic, or
    /// the topic and an epoch once the topic was re-created (its offsets start again at 0).
    fn rename_log(&mut self, name: String) {
        self.topic = name;
        self.sources.clear();
    }

    #[getter]
    fn cached(&self) -> usize {
        self.cache.len()
    }

    /// A cached customer's rule state, for comparing the rules with `CustomerState` without
    /// Redis (tests): tiles as stored bytes, newest time and tile, remembered ids, attributes
    /// as stored bytes, next housekeeping time, the id-sweep trigger. None if not cached.
    fn snapshot<'py>(&self, py: Python<'py>, customer: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(stored) = self.cache.get(customer) else { return Ok(None) };
        let state = &stored.state;
        let out = PyDict::new(py);
        let tiles = PyDict::new(py);
        for (index, tile) in &state.tiles {
            let mut bytes = Vec::new();
            tile.encode(&mut bytes);
            tiles.set_item(index, PyBytes::new(py, &bytes))?;
        }
        out.set_item("tiles", tiles)?;
        out.set_item("newest_ts", state.newest_ts)?;
        out.set_item("newest_tile", state.newest_tile)?;
        let ids = PyDict::new(py);
        for (id, at) in &state.seen_event_ids {
            ids.set_item(id.as_str(), at)?;
        }
        out.set_item("seen_event_ids", ids)?;
        let attributes = PyDict::new(py);
        for (key, (at, bytes)) in &state.attributes {
            attributes.set_item(key, (at, PyBytes::new(py, bytes)))?;
        }
        out.set_item("attributes", attributes)?;
        out.set_item("next_prune_ts", state.next_prune_ts)?;
        out.set_item("ids_sweep_at", state.ids_sweep_at)?;
        Ok(Some(out))
    }

    /// Events that ran into each bounded-state cap since the last call, by cap name.
    fn take_cap_hits(&mut self) -> HashMap<&'static str, u64> {
        let counts = std::mem::take(&mut self.changes.caps);
        ["devices_per_tile", "attributes", "event_ids"].into_iter().zip(counts).filter(|(_, n)| *n > 0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(cache_limit_bytes: usize) -> Core {
        Core::new("t".into(), "sf".into(), 3600, 9600, 24, 604_800.0, 100, 16, 10_000, 0, 64, 1000.0, cache_limit_bytes)
    }

    #[test]
    fn eviction_keeps_the_most_recently_used_within_the_byte_limit() {
        for limit in [0, 100, 1000] {
            let mut core = core(limit);
            for age in 0..25u64 {
                let customer = StoredCustomer { last_used: age, ..StoredCustomer::default() };
                core.cache_insert(format!("c{age:02}"), customer);
            }
            let each = core.cache["c00"].bytes;
            core.evict();
            let kept = (limit / 10 * 9) / each;
            assert_eq!(core.cache.len(), kept);
            assert_eq!(core.cache_bytes, kept * each);
            assert!((25 - kept as u64..25).all(|age| core.cache.contains_key(&format!("c{age:02}"))));
        }
    }

    #[test]
    fn versions_are_unique_tokens() {
        let mut seen = std::collections::HashSet::new();
        let mut state = 7;
        for _ in 0..10_000 {
            state = splitmix64(state);
            assert!(seen.insert((state >> 1).max(1)));
        }
    }
}

/// Decode Kafka messages (objects with `value()`, `partition()`, `offset()`, `timestamp()`):
/// the common valid events here, the rest listed in `Batch.fallback()` for Python to judge.
/// A free function: decoding needs no settings and touches no cached state.
#[pyfunction]
fn decode_records(records: &Bound<'_, PyList>, now: f64, max_future_skew_seconds: f64) -> PyResult<Batch> {
    let py = records.py();
    let mut values = Vec::with_capacity(records.len());
    let mut positions = Vec::with_capacity(records.len());
    for message in records.iter() {
        let partition: i32 = message.call_method0(intern!(py, "partition"))?.extract::<Option<i32>>()?.unwrap_or(0);
        let offset: i64 = message.call_method0(intern!(py, "offset"))?.extract::<Option<i64>>()?.unwrap_or(0);
        // (timestamp type, milliseconds); type 0 means the record has none.
        let (kind, millis): (i32, i64) = message.call_method0(intern!(py, "timestamp"))?.extract()?;
        values.push(message.call_method0(intern!(py, "value"))?.cast_into::<PyBytes>().ok());
        positions.push((partition, offset, if kind == 0 { -1 } else { millis }));
    }
    let slices: Vec<Option<&[u8]>> = values.iter().map(|value| value.as_ref().map(|bytes| bytes.as_bytes())).collect();
    // The bytes objects are immutable and held above: parse them without the GIL, so the
    // writer thread can read Redis replies meanwhile.
    Ok(py.detach(|| {
        let mut batch = Batch::with_capacity(slices.len());
        for (index, (value, (partition, offset, millis))) in slices.iter().zip(positions).enumerate() {
            // A panic on one record's bytes (a bug) must not stop the stream: Python judges it.
            let event = value.and_then(|data| {
                std::panic::catch_unwind(|| wire::decode(data, now, max_future_skew_seconds)).ok().flatten()
            });
            if event.is_none() {
                batch.fallback.push(index);
            }
            batch.push(event, partition, offset, millis);
        }
        batch
    }))
}

/// A batch of records at these positions with no events yet (fill with `set_event`).
#[pyfunction]
fn empty_batch(partitions: Vec<i32>, offsets: Vec<i64>) -> PyResult<Batch> {
    if partitions.len() != offsets.len() {
        return Err(PyValueError::new_err("one partition per offset expected"));
    }
    let mut batch = Batch::with_capacity(offsets.len());
    for (partition, offset) in partitions.into_iter().zip(offsets) {
        batch.push(None, partition, offset, -1);
    }
    Ok(batch)
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Core>()?;
    module.add_class::<Batch>()?;
    module.add_class::<Prepared>()?;
    module.add_class::<features::FeatureMaths>()?;
    module.add_class::<history::Spill>()?;
    module.add_function(wrap_pyfunction!(history::decode_lines, module)?)?;
    module.add_function(wrap_pyfunction!(history::decode_columns, module)?)?;
    module.add_function(wrap_pyfunction!(decode_records, module)?)?;
    module.add_function(wrap_pyfunction!(empty_batch, module)?)?;
    // The contract's vocabulary and limits as this core has them: tests hold them equal to
    // Python's (core/customer_state.py Outcome, core/limits.py).
    let py = module.py();
    let codes = PyDict::new(py);
    for (name, code) in [
        ("applied", APPLIED),
        ("duplicate", DUPLICATE),
        ("too_late", TOO_LATE),
        ("redelivered", ALREADY_APPLIED),
        ("redelivered_too_late", ALREADY_REJECTED),
    ] {
        codes.set_item(name, char::from(code).to_string())?;
    }
    module.add("OUTCOME_CODES", codes)?;
    let limits = PyDict::new(py);
    limits.set_item("MAX_MESSAGE_BYTES", wire::MAX_MESSAGE_BYTES)?;
    limits.set_item("MAX_CUSTOMER_ID_BYTES", wire::MAX_CUSTOMER_ID_BYTES)?;
    limits.set_item("MAX_EVENT_ID_CHARS", wire::MAX_EVENT_ID_CHARS)?;
    limits.set_item("MAX_DEVICE_CHARS", wire::MAX_DEVICE_CHARS)?;
    limits.set_item("MAX_NUMERIC_VALUE", wire::MAX_NUMERIC_VALUE)?;
    limits.set_item("MIN_UNIX_SECONDS", wire::MIN_UNIX_SECONDS)?;
    limits.set_item("MAX_UNIX_SECONDS", wire::MAX_UNIX_SECONDS)?;
    limits.set_item("UNKNOWN_DEVICE", wire::UNKNOWN_DEVICE)?;
    limits.set_item("OTHER_DEVICE", state::OTHER_DEVICE)?;
    limits.set_item("EVENT_TYPES", wire::KIND_NAMES.to_vec())?;
    limits.set_item("PRUNE_INTERVAL_SECONDS", state::PRUNE_INTERVAL_SECONDS)?;
    limits.set_item("IDS_SWEEP_MINIMUM", state::IDS_SWEEP_MINIMUM)?;
    limits.set_item("STORED_FORMAT_VERSION", store::STORED_FORMAT_VERSION)?;
    module.add("LIMITS", limits)?;
    module.add("BUILD", build_info::as_dict(py)?)?;
    Ok(())
}
