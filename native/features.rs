//! Flat features straight from a customer's tiles hash: the twin of `core/features.py`
//! `flat_features` over `store/tile_hash.py` `decode_customer_hash`, for lookups and cohorts.
//!
//! Same maths, same float operations in the same order (sums in ascending tile order, integer
//! counts, true division), same keys in the same order. Anything this code is not sure it reads
//! exactly as Python would (a field name that is not plain ASCII digits, an unknown format
//! version, bytes that are not a tile, an attribute it cannot parse) is left to Python: the
//! customer's entry is `None` and the caller runs the Python path, which answers or raises
//! `StateUnreadable`. The contract and API tests compare the readers with the in-memory engine.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::tiles::{tile_of, Tile};

const PER_DAYS: u64 = 30;
const SECONDS_PER_DAY: f64 = 86_400.0;

/// Sums of one window's tiles (`core/windows.py` `WindowTotals`).
#[derive(Default)]
struct Totals {
    events: u64,
    purchases: u64,
    purchase_value: f64,
    sessions: u64,
    session_seconds: f64,
    converted: u64,
    abandoned: u64,
    abandoned_value: f64,
    tickets: u64,
    response_hours: f64,
    answered: u64,
    escalations: u64,
    devices: Vec<(String, u64)>,
}

impl Totals {
    fn add(&mut self, tile: &Tile) {
        self.events += tile.n;
        self.purchases += tile.pc;
        self.purchase_value += tile.ps;
        self.sessions += tile.sc;
        self.session_seconds += tile.sd;
        self.converted += tile.cc;
        self.abandoned += tile.ca;
        self.abandoned_value += tile.cav;
        self.tickets += tile.tc;
        self.response_hours += tile.rs;
        self.answered += tile.rn;
        self.escalations += tile.te;
        for (device, count) in &tile.devices {
            match self.devices.iter_mut().find(|(name, _)| name == device) {
                Some((_, total)) => *total += u64::from(*count),
                None => self.devices.push((device.clone(), u64::from(*count))),
            }
        }
    }
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator != 0.0 {
        numerator / denominator
    } else {
        0.0
    }
}

/// The read side's settings (`EngineSettings` and its `Thresholds`).
#[pyclass(module = "stream_features._native", frozen)]
pub struct FeatureMaths {
    tile_seconds: f64,
    tiles_per_day: i64,
    retention_days: i64,
    retention_tiles: i64,
    short_days: i64,
    long_days: i64,
    high_activity_ratio: f64,
    declining_ratio: f64,
    support_short_tickets: f64,
    support_long_tickets: f64,
    support_long_escalation_ratio: f64,
    cart_min_count: f64,
    cart_low_conversion_ratio: f64,
    recency_concern_days: f64,
}

/// A customer's tiles, parsed only if every field is read exactly as Python reads it.
fn parse(fields: &Bound<'_, PyAny>) -> PyResult<Option<Vec<(i64, Tile)>>> {
    let mut tiles = Vec::new();
    let mut visit = |field: &[u8], value: &[u8]| -> bool {
        if std::str::from_utf8(field).is_err() {
            return false; // Python decodes every field name first
        }
        if let Some(index) = field.strip_prefix(b"t:") {
            let Some(index) = plain_integer(index) else { return false };
            let Some(tile) = Tile::decode(value) else { return false };
            let names = &tile.devices;
            if names.iter().enumerate().any(|(i, (name, _))| names[..i].iter().any(|(other, _)| other == name)) {
                return false; // a repeated device: Python keeps the last count, leave it to Python
            }
            tiles.push((index, tile));
        } else if field.starts_with(b"a:") {
            return attribute_reads(value);
        } else if field == b"fv" {
            return value == b"1";
        }
        true
    };
    if let Ok(mapping) = fields.cast::<PyDict>() {
        for (field, value) in mapping.iter() {
            let (Ok(field), Ok(value)) = (field.cast::<PyBytes>(), value.cast::<PyBytes>()) else { return Ok(None) };
            if !visit(field.as_bytes(), value.as_bytes()) {
                return Ok(None);
            }
        }
    } else {
        let items = fields.cast::<PyList>()?;
        if items.len() % 2 != 0 {
            return Ok(None);
        }
        let mut iter = items.iter();
        while let (Some(field), Some(value)) = (iter.next(), iter.next()) {
            let (Ok(field), Ok(value)) = (field.cast::<PyBytes>(), value.cast::<PyBytes>()) else { return Ok(None) };
            if !visit(field.as_bytes(), value.as_bytes()) {
                return Ok(None);
            }
        }
    }
    tiles.sort_unstable_by_key(|(index, _)| *index);
    if tiles.windows(2).any(|pair| pair[0].0 == pair[1].0) {
        return Ok(None); // "t:5" and "t:05" are one tile to Python: leave it to Python
    }
    Ok(Some(tiles))
}

/// `-?[0-9]+` that fits an i64 (Python's `int()` reads these the same; anything else is Python's).
fn plain_integer(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// `<event time> <JSON>` as `hash_fields.decode_attribute` reads it: a float, then JSON.
fn attribute_reads(value: &[u8]) -> bool {
    let Some(space) = value.iter().position(|b| *b == b' ') else { return false };
    let stamp = std::str::from_utf8(&value[..space]).ok().and_then(|s| s.parse::<f64>().ok());
    stamp.is_some() && serde_json::from_slice::<serde::de::IgnoredAny>(&value[space + 1..]).is_ok()
}

impl FeatureMaths {
    fn totals(&self, visible: &[(i64, Tile)], low: i64, high: i64) -> Totals {
        let mut totals = Totals::default();
        for (_, tile) in visible.iter().filter(|(k, _)| low < *k && *k <= high) {
            totals.add(tile);
        }
        totals
    }

    fn low(&self, high: i64, days: i64) -> i64 {
        high - days * self.tiles_per_day
    }

    #[allow(clippy::too_many_arguments)]
    fn record<'py>(
        &self,
        py: Python<'py>,
        customer_id: &Bound<'py, PyAny>,
        tiles: Vec<(i64, Tile)>,
        days: i64,
        as_of: f64,
        as_of_iso: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        // Tiles past retention may still be stored until housekeeping deletes them: hidden.
        let visible: Vec<(i64, Tile)> = match tiles.last() {
            Some(&(newest, _)) => tiles.into_iter().filter(|(k, _)| *k > newest - self.retention_tiles).collect(),
            None => Vec::new(),
        };
        let high = tile_of(as_of, self.tile_seconds);
        let retention_low = self.low(high, self.retention_days);
        let in_retention = visible.iter().filter(|(k, _)| retention_low < *k && *k <= high);
        let mut last_purchase: Option<f64> = None;
        let mut has_history = false;
        for (_, tile) in in_retention {
            has_history |= tile.n > 0;
            if tile.pc > 0 {
                if let Some(pt) = tile.pt {
                    if last_purchase.is_none_or(|latest| pt > latest) {
                        last_purchase = Some(pt);
                    }
                }
            }
        }
        let recency = last_purchase.map(|latest| {
            let days_since = (as_of - latest) / SECONDS_PER_DAY;
            if days_since > 0.0 {
                days_since
            } else {
                0.0
            }
        });
        let window = self.totals(&visible, self.low(high, days), high);
        let short = self.totals(&visible, self.low(high, self.short_days), high);
        let long = self.totals(&visible, self.low(high, self.long_days), high);

        let out = PyDict::new(py);
        out.set_item("customer_id", customer_id)?;
        out.set_item("as_of", as_of_iso)?;
        out.set_item("window_days", days)?;
        out.set_item("has_history", has_history)?;
        let w = &window;
        let per = |count: u64, over: i64| (count * PER_DAYS) as f64 / over as f64;
        out.set_item("purchase_count", w.purchases)?;
        out.set_item("total_purchase_value", w.purchase_value)?;
        out.set_item("average_order_value", ratio(w.purchase_value, w.purchases as f64))?;
        out.set_item("purchase_frequency", per(w.purchases, days))?;
        out.set_item("purchase_recency_days", recency)?;
        out.set_item("session_count", w.sessions)?;
        out.set_item("session_frequency", per(w.sessions, days))?;
        out.set_item("average_session_duration", ratio(w.session_seconds, w.sessions as f64))?;
        let mut devices: Vec<&(String, u64)> = w.devices.iter().filter(|(_, count)| *count > 0).collect();
        devices.sort_by(|a, b| a.0.cmp(&b.0));
        let usage = PyDict::new(py);
        for (device, count) in &devices {
            usage.set_item(device, count)?;
        }
        out.set_item("device_usage", usage)?;
        // Most sessions wins; ties go to the smallest name (all devices, as Python's min()).
        let primary = w.devices.iter().min_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0))).map(|(d, _)| d);
        out.set_item("primary_device", primary)?;
        let carts = w.converted + w.abandoned;
        out.set_item("converted_cart_count", w.converted)?;
        out.set_item("abandoned_cart_count", w.abandoned)?;
        out.set_item("cart_count", carts)?;
        out.set_item("cart_conversion_ratio", ratio(w.converted as f64, carts as f64))?;
        out.set_item("abandoned_cart_value", w.abandoned_value)?;
        out.set_item("support_ticket_count", w.tickets)?;
        out.set_item("average_response_time_hours", ratio(w.response_hours, w.answered as f64))?;
        out.set_item("escalation_count", w.escalations)?;
        out.set_item("escalation_ratio", ratio(w.escalations as f64, w.tickets as f64))?;

        // Trade-off indicators (`features.py` `tradeoff_indicators`).
        let engagement_short = per(short.purchases + short.sessions, self.short_days);
        let engagement_long = per(long.purchases + long.sessions, self.long_days);
        let high_short = engagement_short > 0.0 && engagement_short >= self.high_activity_ratio * engagement_long;
        let declining = engagement_long > 0.0 && engagement_short < self.declining_ratio * engagement_long;
        let support_risk = short.tickets as f64 >= self.support_short_tickets
            || (long.tickets as f64 >= self.support_long_tickets
                && ratio(long.escalations as f64, long.tickets as f64) >= self.support_long_escalation_ratio);
        let short_carts = short.converted + short.abandoned;
        let cart_risk = short_carts as f64 >= self.cart_min_count
            && ratio(short.converted as f64, short_carts as f64) < self.cart_low_conversion_ratio;
        let retention_concern = declining
            || recency.is_some_and(|days_since| days_since > self.recency_concern_days)
            || (support_risk && cart_risk);
        let trend = if engagement_long == 0.0 {
            "inactive"
        } else if declining {
            "declining"
        } else if high_short {
            "growing"
        } else {
            "stable"
        };
        out.set_item("engagement_short", engagement_short)?;
        out.set_item("engagement_long", engagement_long)?;
        out.set_item("high_short_term_activity", high_short)?;
        out.set_item("declining_engagement", declining)?;
        out.set_item("support_risk", support_risk)?;
        out.set_item("cart_abandonment_risk", cart_risk)?;
        out.set_item("retention_concern", retention_concern)?;
        out.set_item("activity_trend", trend)?;
        Ok(out)
    }
}

#[pymethods]
impl FeatureMaths {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (*, tile_seconds, tiles_per_day, retention_days, retention_tiles, short_days, long_days, high_activity_ratio, declining_ratio, support_short_tickets, support_long_tickets, support_long_escalation_ratio, cart_min_count, cart_low_conversion_ratio, recency_concern_days))]
    fn new(
        tile_seconds: i64,
        tiles_per_day: i64,
        retention_days: i64,
        retention_tiles: i64,
        short_days: i64,
        long_days: i64,
        high_activity_ratio: f64,
        declining_ratio: f64,
        support_short_tickets: f64,
        support_long_tickets: f64,
        support_long_escalation_ratio: f64,
        cart_min_count: f64,
        cart_low_conversion_ratio: f64,
        recency_concern_days: f64,
    ) -> Self {
        FeatureMaths {
            tile_seconds: tile_seconds as f64,
            tiles_per_day,
            retention_days,
            retention_tiles,
            short_days,
            long_days,
            high_activity_ratio,
            declining_ratio,
            support_short_tickets,
            support_long_tickets,
            support_long_escalation_ratio,
            cart_min_count,
            cart_low_conversion_ratio,
            recency_concern_days,
        }
    }

    /// Flat features per customer from its HGETALL reply (a dict, or a flat list of field,
    /// value), in order; `None` where Python must decide (see the module doc).
    fn flat<'py>(
        &self,
        py: Python<'py>,
        customer_ids: &Bound<'py, PyList>,
        replies: &Bound<'py, PyList>,
        days: i64,
        as_of: f64,
        as_of_iso: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<Option<Bound<'py, PyDict>>>> {
        let mut out = Vec::with_capacity(customer_ids.len());
        for (customer_id, reply) in customer_ids.iter().zip(replies.iter()) {
            out.push(match parse(&reply)? {
                Some(tiles) => Some(self.record(py, &customer_id, tiles, days, as_of, as_of_iso)?),
                None => None,
            });
        }
        Ok(out)
    }
}
