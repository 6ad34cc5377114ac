//! A customer's two Redis hashes ⇄ `CustomerState` plus the consumer's bookkeeping: the Rust
//! twin of `stream_features/store/hash_fields.py`. The layout is specified once, in the README
//! ("Redis key layout"); `tests/test_store_contract.py` pins its bytes.

use rmpv::Value;

use crate::resp::Args;
use crate::state::{Changes, CustomerState};
use crate::tiles::Tile;

/// A MessagePack number kept as it was read (the last TTL refresh is written as an integer,
/// and "never" as -inf), so that rewriting it gives the same bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(v) => v as f64,
            Number::Float(v) => v,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoredCustomer {
    pub state: CustomerState,
    pub version: u64,
    /// "<topic>:<partition>" → last applied offset, in first-written order.
    pub offsets: Vec<(String, i64)>,
    /// Same keys → the offsets judged too_late by the customer's latest write (all of them:
    /// they are what a replay of the batch whose dead letters may not have landed must re-send).
    pub rejects: Vec<(String, Vec<i64>)>,
    pub ttl_set_at: Number,
    pub last_used: u64,
    /// This cached state's approximate size in memory (the writer's cache is sized in bytes).
    pub bytes: usize,
}

impl Default for StoredCustomer {
    fn default() -> Self {
        StoredCustomer {
            state: CustomerState::default(),
            version: 0,
            offsets: Vec::new(),
            rejects: Vec::new(),
            ttl_set_at: Number::Float(f64::NEG_INFINITY),
            last_used: 0,
            bytes: 0,
        }
    }
}

#[derive(Debug)]
pub struct CorruptState(pub String);

/// The layout this release reads and writes. A customer's tiles hash without an `fv` field is
/// in this layout; a later layout will write its own number there (README, key layout).
pub const STORED_FORMAT_VERSION: &str = "1";

fn number(value: &Value) -> Option<Number> {
    match value {
        Value::Integer(v) => v.as_i64().map(Number::Int),
        Value::F64(v) => Some(Number::Float(*v)),
        Value::F32(v) => Some(Number::Float(f64::from(*v))),
        _ => None,
    }
}

fn text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

impl StoredCustomer {
    /// Rebuild from HGETALL of both hashes (both empty: a new customer).
    pub fn load<'a>(
        main: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        aux: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<StoredCustomer, CorruptState> {
        let mut stored = StoredCustomer::default();
        let state = &mut stored.state;
        for (field, raw) in main {
            if let Some(index) = field.strip_prefix(b"t:") {
                let index: i64 =
                    text(index).parse().map_err(|_| CorruptState(format!("tile field {}", text(field))))?;
                let tile = Tile::decode(raw).ok_or_else(|| CorruptState(format!("tile {index}")))?;
                state.tiles.insert(index, tile);
            } else if field == b"fv" && raw != STORED_FORMAT_VERSION.as_bytes() {
                return Err(CorruptState(format!(
                    "stored format version {} (this release reads {STORED_FORMAT_VERSION})",
                    text(raw)
                )));
            } else if let Some(key) = field.strip_prefix(b"a:") {
                let corrupt = || CorruptState(format!("attribute {}", text(key)));
                let space = raw.iter().position(|&b| b == b' ').ok_or_else(corrupt)?;
                let at: f64 = text(&raw[..space]).parse().map_err(|_| corrupt())?;
                // The JSON is the readers' business, but a state they cannot read is unreadable.
                serde_json::from_slice::<serde::de::IgnoredAny>(&raw[space + 1..]).map_err(|_| corrupt())?;
                state.attributes.insert(text(key), (at, raw.to_vec()));
            }
        }
        for (field, raw) in aux {
            if let Some(event_id) = field.strip_prefix(b"e:") {
                let at = f64::from_le_bytes(raw.try_into().map_err(|_| CorruptState("event id time".into()))?);
                state.seen_event_ids.insert(text(event_id).into(), at);
            } else if field == b"v" {
                stored.version = text(raw).parse().map_err(|_| CorruptState("version".into()))?;
            } else if field == b"m" {
                let meta = rmpv::decode::read_value(&mut &raw[..]).map_err(|e| CorruptState(format!("m: {e}")))?;
                let Value::Map(entries) = meta else { return Err(CorruptState("m is not a map".into())) };
                for (key, value) in &entries {
                    match key.as_str().unwrap_or_default() {
                        "nt" => state.newest_tile = value.as_i64(),
                        "nts" => state.newest_ts = number(value).map(Number::as_f64),
                        "np" => state.next_prune_ts = number(value).map_or(f64::NEG_INFINITY, Number::as_f64),
                        "tt" => stored.ttl_set_at = number(value).unwrap_or(Number::Float(f64::NEG_INFINITY)),
                        "is" => {
                            let at = value.as_u64().ok_or_else(|| CorruptState("m: is".into()))?;
                            state.ids_sweep_at = usize::try_from(at).map_err(|_| CorruptState("m: is".into()))?;
                        }
                        "o" => {
                            for (source, offset) in value.as_map().into_iter().flatten() {
                                let source = source.as_str().unwrap_or_default().to_owned();
                                stored.offsets.push((source, offset.as_i64().unwrap_or(-1)));
                            }
                        }
                        "j" => {
                            for (source, offsets) in value.as_map().into_iter().flatten() {
                                let offsets = offsets.as_array().into_iter().flatten().filter_map(Value::as_i64);
                                stored
                                    .rejects
                                    .push((source.as_str().unwrap_or_default().to_owned(), offsets.collect()));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(stored)
    }

    pub fn offset(&self, source: &str) -> i64 {
        self.offsets.iter().find(|(name, _)| name == source).map_or(-1, |(_, offset)| *offset)
    }

    pub fn set_offset(&mut self, source: &str, offset: i64) {
        match self.offsets.iter_mut().find(|(name, _)| name == source) {
            Some((_, last)) => *last = offset,
            None => self.offsets.push((source.to_owned(), offset)),
        }
    }

    pub fn was_rejected(&self, source: &str, offset: i64) -> bool {
        self.rejects.iter().any(|(name, offsets)| name == source && offsets.contains(&offset))
    }

    pub fn forget_rejects(&mut self, source: &str) {
        self.rejects.retain(|(name, _)| name != source);
    }

    pub fn remember_reject(&mut self, source: &str, offset: i64) {
        match self.rejects.iter_mut().find(|(name, _)| name == source) {
            Some((_, offsets)) => offsets.push(offset),
            None => self.rejects.push((source.to_owned(), vec![offset])),
        }
    }

    /// The `m` field: a MessagePack map `nt nts np tt o j is` (layout: README, key layout).
    pub fn encode_meta(&self, out: &mut Vec<u8>) {
        use rmp::encode::{write_f64, write_map_len, write_nil, write_sint, write_str};
        let state = &self.state;
        let fail = "writing to a Vec cannot fail";
        write_map_len(out, 7).expect(fail);
        write_str(out, "nt").expect(fail);
        match state.newest_tile {
            Some(tile) => write_sint(out, tile).map(|_| ()).expect(fail),
            None => write_nil(out).expect(fail),
        }
        write_str(out, "nts").expect(fail);
        match state.newest_ts {
            Some(at) => write_f64(out, at).expect(fail),
            None => write_nil(out).expect(fail),
        }
        write_str(out, "np").expect(fail);
        write_f64(out, state.next_prune_ts).expect(fail);
        write_str(out, "tt").expect(fail);
        match self.ttl_set_at {
            Number::Int(at) => write_sint(out, at).map(|_| ()).expect(fail),
            Number::Float(at) => write_f64(out, at).expect(fail),
        }
        write_str(out, "o").expect(fail);
        write_map_len(out, self.offsets.len() as u32).expect(fail);
        for (source, offset) in &self.offsets {
            write_str(out, source).expect(fail);
            write_sint(out, *offset).expect(fail);
        }
        write_str(out, "j").expect(fail);
        write_map_len(out, self.rejects.len() as u32).expect(fail);
        for (source, offsets) in &self.rejects {
            write_str(out, source).expect(fail);
            rmp::encode::write_array_len(out, offsets.len() as u32).expect(fail);
            for offset in offsets {
                write_sint(out, *offset).expect(fail);
            }
        }
        write_str(out, "is").expect(fail);
        rmp::encode::write_uint(out, state.ids_sweep_at as u64).expect(fail);
    }

    /// Roughly what this state takes in memory (maps' entries and strings; a tile by its fixed
    /// size): cheap enough to recompute at every write.
    pub fn approximate_bytes(&self, customer: &str) -> usize {
        const ENTRY: usize = 48; // a hash-map slot and its bookkeeping
        let state = &self.state;
        let tiles = state.tiles.len() * (ENTRY + std::mem::size_of::<Tile>() + 24);
        let ids = state.seen_event_ids.len() * (ENTRY + 32);
        let attributes = state.attributes.iter().map(|(k, (_, v))| ENTRY + k.len() + v.len() + 24).sum::<usize>();
        let offsets = self.offsets.iter().map(|(s, _)| ENTRY + s.len()).sum::<usize>();
        let rejects = self.rejects.iter().map(|(s, o)| ENTRY + s.len() + 8 * o.len()).sum::<usize>();
        256 + 2 * customer.len() + tiles + ids + attributes + offsets + rejects
    }

    /// Append this customer's compare-and-set arguments (layout: cas.lua): a header
    /// `"<version> <new version> <refresh> <a> <b> <c> <d>"`, `m`, then the four field lists.
    pub fn write_arguments(
        &self,
        changes: &Changes,
        refresh_ttl: bool,
        new_version: u64,
        args: &mut Args,
        scratch: &mut Vec<u8>,
    ) {
        let state = &self.state;
        let start = args.buf.len();
        scratch.clear();
        self.encode_meta(scratch);
        args.push(scratch);
        for &index in &changes.tiles {
            args.push_number(b"t:", index);
            scratch.clear();
            state.tiles[&index].encode(scratch);
            args.push(scratch);
        }
        for key in &changes.attributes {
            args.push_parts(&[b"a:", key.as_bytes()]);
            args.push(&state.attributes[key].1);
        }
        for &index in &changes.deleted_tiles {
            args.push_number(b"t:", index);
        }
        for key in &changes.deleted_attributes {
            args.push_parts(&[b"a:", key.as_bytes()]);
        }
        for event_id in &changes.event_ids {
            args.push_parts(&[b"e:", event_id.as_bytes()]);
            args.push(&state.seen_event_ids[event_id].to_le_bytes());
        }
        for event_id in &changes.deleted_event_ids {
            args.push_parts(&[b"e:", event_id.as_bytes()]);
        }
        let main_set = 2 * (changes.tiles.len() + changes.attributes.len());
        let main_del = changes.deleted_tiles.len() + changes.deleted_attributes.len();
        let (aux_set, aux_del) = (2 * changes.event_ids.len(), changes.deleted_event_ids.len());
        // The header goes first but needs the counts: frame it now and slide it in front.
        let header = format!(
            "{} {} {} {main_set} {main_del} {aux_set} {aux_del}",
            self.version,
            new_version,
            u8::from(refresh_ttl)
        );
        let mut framed = Args::default();
        framed.push(header.as_bytes());
        args.buf.splice(start..start, framed.buf);
        args.count += 1;
    }
}

/// `<prefix>:{<escaped id>}`: `%`, `{`, `}` escaped so the hash tag is never cut short.
pub fn tiles_key(prefix: &str, customer_id: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + customer_id.len() + 4);
    key.push_str(prefix);
    key.push_str(":{");
    for c in customer_id.chars() {
        match c {
            '%' => key.push_str("%25"),
            '{' => key.push_str("%7B"),
            '}' => key.push_str("%7D"),
            _ => key.push(c),
        }
    }
    key.push('}');
    key
}
