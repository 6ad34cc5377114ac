//! `stream_features._native`: the consumer's per-event work in Rust.
//!
//! Python keeps everything that talks to Kafka and Redis and everything that judges invalid
//! events; this module decodes the common valid events, applies them to cached customer states
//! with the same rules as `customer_state.py`, and builds the compare-and-set calls of
//! `cas.lua` as ready-to-send RESP. See `stream_features/store/writer.py`.

mod batch;
mod build_info;
mod features;
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
        let mut renewed: Vec<&str> = Vec::new();
        for &record in records {
            let record = record as usize;
            let source = &sources[&batch.partitions[record]];
            let offset = batch.offsets[record];
            let event = batch.events[record].as_ref().expect("grouped records hold events");
            if offset <= stored.offset(source) {
                codes.push(if stored.was_rejected(source, offset) { ALREADY_REJECTED } else { ALREADY_APPLIED });
                continue;
            }
            if !renewed.contains(&source.as_str()) {
                // This write's too_late offsets of this partition replace the last write's,
                // whose dead letters were acknowledged before this batch was sent; replayed
                // records (above) are still judged against them.
                stored.forget_rejects(source);
                renewed.push(source.as_str());
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
    #[pyo3(signature = (*, topic, prefix, tile_seconds, retention_tiles, tiles_per_day, dedup_horizon_seconds, max_attributes, max_devices_per_tile, max_event_ids, key_ttl_seconds, customers_per_call, cache_size))]
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
        cache_size: usize,
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
            cache: AHashMap::new(),
            cache_size,
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
        let Batch { records_of, codes: outcome_codes, customers, .. } = &mut *batch;
        for (call, reply) in prepared.calls.iter().zip(replies) {
            let flags = reply.as_deref().unwrap_or("").as_bytes();
            for (place, (&at, codes)) in call.customers.iter().zip(&call.codes).enumerate() {
                if flags.get(place) == Some(&b'1') {
                    for (&record, &code) in records_of[at].iter().zip(codes) {
                        outcome_codes[record as usize] = code;
                    }
                } else {
                    let name = customers[at].clone();
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

    /// Drop every cached state (Redis went back in time: the cache may be ahead of it).
    fn forget_all(&mut self) {
        self.cache.clear();
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

    fn core(cache_size: usize) -> Core {
        Core::new("t".into(), "sf".into(), 3600, 9600, 24, 604_800.0, 100, 16, 10_000, 0, 64, cache_size)
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
