//! One customer's state and the in-order rules that change it: the Rust twin of
//! `stream_features/core/customer_state.py`, which is the reference (the in-memory engine runs it,
//! and tests check that both give the same state and the same stored bytes).

use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use compact_str::CompactString;

use crate::tiles::{tile_of, Tile};
use crate::wire::{Event, CART, PROFILE, PURCHASE, SESSION};

pub const PRUNE_INTERVAL_SECONDS: f64 = 86_400.0;
pub const IDS_SWEEP_MINIMUM: usize = 32;
/// Sessions of a device first seen in a tile that already has `max_devices_per_tile` devices.
pub const OTHER_DEVICE: &str = "other";

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub tile_seconds: f64,
    pub retention_tiles: i64,
    pub tiles_per_day: i64,
    pub dedup_horizon_seconds: f64,
    pub max_attributes: usize,
    pub max_devices_per_tile: usize,
    pub max_event_ids: usize,
}

/// Which bounded-state cap an event ran into (counted for the metrics).
#[derive(Debug, Clone, Copy)]
pub enum Cap {
    Devices = 0,
    Attributes = 1,
    EventIds = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    TooLate,
}

/// The fields a store must rewrite, since tracking started.
#[derive(Debug, Default)]
pub struct Changes {
    pub tiles: HashSet<i64>,
    pub deleted_tiles: HashSet<i64>,
    pub event_ids: HashSet<CompactString>,
    pub deleted_event_ids: HashSet<CompactString>,
    pub attributes: HashSet<String>,
    pub deleted_attributes: HashSet<String>,
    /// Tiles and ids this write creates (not in the stored hash before it): one it also deletes
    /// (a history past retention or the dedup horizon) is neither written nor deleted.
    pub fresh_tiles: HashSet<i64>,
    pub fresh_event_ids: HashSet<CompactString>,
    /// Events that ran into each `Cap` (not cleared per customer: the core drains it).
    pub caps: [u64; 3],
}

impl Changes {
    /// Fields a write of these changes sets or deletes.
    pub fn fields(&self) -> usize {
        self.tiles.len()
            + self.deleted_tiles.len()
            + self.event_ids.len()
            + self.deleted_event_ids.len()
            + self.attributes.len()
            + self.deleted_attributes.len()
    }

    /// Empty for the next customer. A set that grew for one busy customer is shrunk back, as
    /// clearing costs its capacity, not its length.
    pub fn clear(&mut self) {
        fn reset<T: std::hash::Hash + Eq>(set: &mut HashSet<T>) {
            set.clear();
            if set.capacity() > 64 {
                set.shrink_to(64);
            }
        }
        reset(&mut self.tiles);
        reset(&mut self.deleted_tiles);
        reset(&mut self.event_ids);
        reset(&mut self.deleted_event_ids);
        reset(&mut self.attributes);
        reset(&mut self.deleted_attributes);
        reset(&mut self.fresh_tiles);
        reset(&mut self.fresh_event_ids);
    }
}

#[derive(Debug, Clone)]
pub struct CustomerState {
    pub tiles: HashMap<i64, Tile>,
    pub newest_ts: Option<f64>,
    pub newest_tile: Option<i64>,
    pub seen_event_ids: HashMap<CompactString, f64>,
    /// attribute → (event time, stored bytes `<event time> <JSON>`)
    pub attributes: HashMap<String, (f64, Vec<u8>)>,
    pub next_prune_ts: f64,
    tile_floor: Option<i64>,
    /// Remembered ids are swept once there are more than this; stored with the state (`is`) so
    /// that a reloaded customer sweeps, and so forgets ids past the cap, exactly when the
    /// in-memory reference does.
    pub ids_sweep_at: usize,
}

impl Default for CustomerState {
    fn default() -> Self {
        CustomerState {
            tiles: HashMap::new(),
            newest_ts: None,
            newest_tile: None,
            seen_event_ids: HashMap::new(),
            attributes: HashMap::new(),
            next_prune_ts: f64::NEG_INFINITY,
            tile_floor: None,
            ids_sweep_at: IDS_SWEEP_MINIMUM,
        }
    }
}

impl CustomerState {
    /// Apply one valid event in stream order (rules: customer_state.py's module docstring).
    pub fn apply(&mut self, event: &Event, settings: &Settings, changes: &mut Changes) -> Outcome {
        let timestamp = event.timestamp;
        let tile_index = tile_of(timestamp, settings.tile_seconds);
        if let Some(newest) = self.newest_tile {
            if tile_index <= newest - settings.retention_tiles {
                return Outcome::TooLate;
            }
        }
        if let Some(event_id) = &event.event_id {
            if let Some(&seen_at) = self.seen_event_ids.get(event_id) {
                if self.within_horizon(seen_at, settings) {
                    return Outcome::Duplicate;
                }
            }
            let known = self.seen_event_ids.insert(event_id.clone(), timestamp).is_some();
            let stored = changes.deleted_event_ids.remove(event_id); // swept earlier in this write
            if !known && !stored {
                changes.fresh_event_ids.insert(event_id.clone());
            }
            changes.event_ids.insert(event_id.clone());
        }
        let tile = self.tiles.entry(tile_index).or_insert_with(|| {
            if let Some(floor) = self.tile_floor {
                if tile_index < floor {
                    self.tile_floor = Some(tile_index);
                }
            }
            if !changes.deleted_tiles.contains(&tile_index) {
                changes.fresh_tiles.insert(tile_index);
            }
            Tile::default()
        });
        match event.kind {
            PURCHASE => tile.add_purchase(event.amount.unwrap_or(0.0), timestamp),
            SESSION => {
                let device = event.device.as_deref().unwrap_or("unknown");
                if !tile.add_session(event.amount.unwrap_or(0.0), device, settings.max_devices_per_tile) {
                    changes.caps[Cap::Devices as usize] += 1;
                }
            }
            CART => tile.add_cart(event.flag, event.amount),
            PROFILE => tile.add_profile(),
            _ => tile.add_support(event.amount, event.flag),
        }
        changes.tiles.insert(tile_index);
        if event.kind == PROFILE {
            self.merge_attributes(event, settings, changes);
        }
        if self.newest_ts.is_none_or(|newest| timestamp > newest) {
            self.newest_ts = Some(timestamp);
        }
        let newest_tile = match self.newest_tile {
            Some(newest) if newest >= tile_index => newest,
            _ => {
                self.newest_tile = Some(tile_index);
                tile_index
            }
        };
        let cap = settings.max_event_ids;
        if self.seen_event_ids.len() > self.ids_sweep_at.min(cap + cap / 8) {
            self.sweep_ids(settings, changes);
        }
        if timestamp >= self.next_prune_ts {
            self.next_prune_ts = timestamp + PRUNE_INTERVAL_SECONDS;
            let slack = settings.tiles_per_day;
            if self.tile_floor.is_none_or(|floor| floor <= newest_tile - settings.retention_tiles - slack) {
                self.sweep_tiles(settings, slack, changes);
            }
        }
        Outcome::Applied
    }

    fn within_horizon(&self, seen_at: f64, settings: &Settings) -> bool {
        self.newest_ts.is_none_or(|newest| seen_at >= newest - settings.dedup_horizon_seconds)
    }

    /// Newest event time wins per key; past `max_attributes` keys the oldest attribute (event
    /// time, then key) is evicted, which may be the new one itself.
    fn merge_attributes(&mut self, event: &Event, settings: &Settings, changes: &mut Changes) {
        let at = event.timestamp;
        for (key, stored) in &event.attributes {
            if let Some((current, _)) = self.attributes.get(key) {
                if at >= *current {
                    self.attributes.insert(key.clone(), (at, stored.clone()));
                    changes.attributes.insert(key.clone());
                }
                continue;
            }
            if self.attributes.len() >= settings.max_attributes {
                changes.caps[Cap::Attributes as usize] += 1;
                let oldest = self
                    .attributes
                    .iter()
                    .map(|(name, (time, _))| (*time, name))
                    .min_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)))
                    .map(|(time, name)| (time, name.clone()));
                match oldest {
                    Some((time, name)) if (time, &name) < (at, key) => {
                        self.attributes.remove(&name);
                        changes.attributes.remove(&name);
                        changes.deleted_attributes.insert(name);
                    }
                    _ => continue, // the new attribute is the oldest: it is the one left out
                }
            }
            self.attributes.insert(key.clone(), (at, stored.clone()));
            changes.deleted_attributes.remove(key);
            changes.attributes.insert(key.clone());
        }
    }

    /// Forget ids past the horizon; past `max_event_ids`, also the oldest (event time, then id)
    /// down to the cap. Runs when the map outgrows `ids_sweep_at`: twice its size after the last
    /// sweep, at most the cap plus an eighth (amortised O(log n) per id).
    fn sweep_ids(&mut self, settings: &Settings, changes: &mut Changes) {
        let mut forget: HashSet<CompactString> = HashSet::new();
        if let Some(newest) = self.newest_ts {
            let horizon_floor = newest - settings.dedup_horizon_seconds;
            forget.extend(self.seen_event_ids.iter().filter(|(_, &at)| at < horizon_floor).map(|(id, _)| id.clone()));
        }
        let cap = settings.max_event_ids;
        if self.seen_event_ids.len() - forget.len() > cap {
            let mut kept: Vec<(f64, &CompactString)> =
                self.seen_event_ids.iter().filter(|(id, _)| !forget.contains(*id)).map(|(id, &at)| (at, id)).collect();
            let excess = kept.len() - cap;
            kept.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
            let oldest: Vec<CompactString> = kept[..excess].iter().map(|(_, id)| (*id).clone()).collect();
            changes.caps[Cap::EventIds as usize] += excess as u64;
            forget.extend(oldest);
        }
        for event_id in forget {
            self.seen_event_ids.remove(&event_id);
            changes.event_ids.remove(&event_id);
            if !changes.fresh_event_ids.remove(&event_id) {
                changes.deleted_event_ids.insert(event_id);
            }
        }
        self.ids_sweep_at = IDS_SWEEP_MINIMUM.max(2 * self.seen_event_ids.len()).min(cap + cap / 8);
    }

    /// Delete tiles past retention, once a cached lower bound shows some are (plus slack).
    fn sweep_tiles(&mut self, settings: &Settings, slack_tiles: i64, changes: &mut Changes) {
        let Some(newest_tile) = self.newest_tile else { return };
        if self.tiles.is_empty() {
            return;
        }
        let oldest_kept = newest_tile - settings.retention_tiles;
        let floor = *self.tile_floor.get_or_insert_with(|| *self.tiles.keys().min().expect("tiles is not empty"));
        if floor > oldest_kept - slack_tiles {
            return;
        }
        let old: Vec<i64> = self.tiles.keys().copied().filter(|&index| index <= oldest_kept).collect();
        for index in old {
            self.tiles.remove(&index);
            changes.tiles.remove(&index);
            if !changes.fresh_tiles.remove(&index) {
                changes.deleted_tiles.insert(index);
            }
        }
        self.tile_floor = self.tiles.keys().min().copied();
    }
}
