//! Per-tile partial aggregates and their stored bytes: the twin of `stream_features/core/tiles.py`.
//! The byte layout is specified once, in the README ("Redis key layout"); golden-byte tests on
//! both sides pin it.

use crate::state::OTHER_DEVICE;

/// Partial aggregates of one customer's events in one tile. Counts are whole numbers kept as
/// integers; they are stored as float64 like the sums.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tile {
    pub n: u64,
    pub pc: u64,
    pub ps: f64,
    pub pt: Option<f64>,
    pub sc: u64,
    pub sd: f64,
    pub cc: u64,
    pub ca: u64,
    pub cav: f64,
    pub tc: u64,
    pub rs: f64,
    pub rn: u64,
    pub te: u64,
    /// Sessions per device, in first-seen order.
    pub devices: Vec<(String, u32)>,
}

impl Tile {
    pub fn add_purchase(&mut self, amount: f64, timestamp: f64) {
        self.n += 1;
        self.pc += 1;
        self.ps += amount;
        if self.pt.is_none_or(|latest| timestamp > latest) {
            self.pt = Some(timestamp);
        }
    }

    /// Counts the session under its device, or under `OTHER_DEVICE` when the tile already has
    /// `max_devices` devices (then returns false). The linear search stays short: the list holds
    /// at most `max_devices + 1` names.
    pub fn add_session(&mut self, duration_seconds: f64, device: &str, max_devices: usize) -> bool {
        self.n += 1;
        self.sc += 1;
        self.sd += duration_seconds;
        if let Some((_, count)) = self.devices.iter_mut().find(|(name, _)| name == device) {
            *count += 1;
            return true;
        }
        if self.devices.len() < max_devices {
            self.devices.push((device.to_owned(), 1));
            return true;
        }
        match self.devices.iter_mut().find(|(name, _)| name == OTHER_DEVICE) {
            Some((_, count)) => *count += 1,
            None => self.devices.push((OTHER_DEVICE.to_owned(), 1)),
        }
        false
    }

    pub fn add_cart(&mut self, converted: bool, value: Option<f64>) {
        self.n += 1;
        if converted {
            self.cc += 1;
        } else {
            self.ca += 1;
            if let Some(value) = value {
                self.cav += value;
            }
        }
    }

    pub fn add_support(&mut self, response_time_hours: Option<f64>, escalated: bool) {
        self.n += 1;
        self.tc += 1;
        if let Some(hours) = response_time_hours {
            self.rs += hours;
            self.rn += 1;
        }
        if escalated {
            self.te += 1;
        }
    }

    pub fn add_profile(&mut self) {
        self.n += 1;
    }

    /// `uint16` mask of present fields, one little-endian float64 per present field in field
    /// order (zeros left out; `pt` kept with any purchase), then per device `uint16` name
    /// length, UTF-8 name, `uint32` count.
    pub fn encode(&self, out: &mut Vec<u8>) {
        // (value, present) in field order; `pt` is kept with any purchase, even one at time 0.
        let fields = [
            (self.n as f64, self.n != 0),
            (self.pc as f64, self.pc != 0),
            (self.ps, self.ps != 0.0),
            (self.pt.unwrap_or(0.0), self.pc != 0),
            (self.sc as f64, self.sc != 0),
            (self.sd, self.sd != 0.0),
            (self.cc as f64, self.cc != 0),
            (self.ca as f64, self.ca != 0),
            (self.cav, self.cav != 0.0),
            (self.tc as f64, self.tc != 0),
            (self.rs, self.rs != 0.0),
            (self.rn as f64, self.rn != 0),
            (self.te as f64, self.te != 0),
        ];
        let mask =
            fields.iter().enumerate().filter(|(_, (_, present))| *present).fold(0u16, |m, (bit, _)| m | 1 << bit);
        out.extend_from_slice(&mask.to_le_bytes());
        for (value, _) in fields.iter().filter(|(_, present)| *present) {
            out.extend_from_slice(&value.to_le_bytes());
        }
        for (device, count) in &self.devices {
            out.extend_from_slice(&(device.len() as u16).to_le_bytes());
            out.extend_from_slice(device.as_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
    }

    /// Inverse of `encode`; `None` for bytes it could not have written.
    pub fn decode(data: &[u8]) -> Option<Tile> {
        let mask = u16::from_le_bytes(data.get(..2)?.try_into().ok()?);
        let mut tile = Tile::default();
        let mut at = 2;
        for bit in 0..13 {
            if mask >> bit & 1 == 0 {
                continue;
            }
            let value = f64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?);
            at += 8;
            // Bytes it could not have written (as tiles.py's decode_tile): non-finite numbers,
            // counts that are not whole numbers.
            let is_sum = matches!(bit, 2 | 3 | 5 | 8 | 10);
            if !value.is_finite() || (!is_sum && (value < 0.0 || value.fract() != 0.0)) {
                return None;
            }
            match bit {
                0 => tile.n = value as u64,
                1 => tile.pc = value as u64,
                2 => tile.ps = value,
                3 => tile.pt = Some(value),
                4 => tile.sc = value as u64,
                5 => tile.sd = value,
                6 => tile.cc = value as u64,
                7 => tile.ca = value as u64,
                8 => tile.cav = value,
                9 => tile.tc = value as u64,
                10 => tile.rs = value,
                11 => tile.rn = value as u64,
                _ => tile.te = value as u64,
            }
        }
        while at < data.len() {
            let length = usize::from(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?));
            at += 2;
            let name = std::str::from_utf8(data.get(at..at + length)?).ok()?.to_owned();
            at += length;
            let count = u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?);
            at += 4;
            tile.devices.push((name, count));
        }
        Some(tile)
    }
}

/// Python's `int(timestamp // tile_seconds)` for a float timestamp (CPython's float floor
/// division, step for step, so that tile edges fall exactly where Python puts them).
pub fn tile_of(timestamp: f64, tile_seconds: f64) -> i64 {
    let modulo = timestamp % tile_seconds;
    let mut div = (timestamp - modulo) / tile_seconds;
    if modulo != 0.0 && ((tile_seconds < 0.0) != (modulo < 0.0)) {
        div -= 1.0;
    }
    if div == 0.0 {
        return 0;
    }
    let mut floor = div.floor();
    if div - floor > 0.5 {
        floor += 1.0;
    }
    floor as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_python() {
        // tiles.py's doctest: one purchase of 19.99 at 7200.5
        let mut tile = Tile::default();
        tile.add_purchase(19.99, 7200.5);
        let mut out = Vec::new();
        tile.encode(&mut out);
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "0f00000000000000f03f000000000000f03f3d0ad7a370fd3340000000008020bc40");
        assert_eq!(Tile::decode(&out), Some(tile));
    }

    #[test]
    fn devices_round_trip() {
        let mut tile = Tile::default();
        tile.add_session(3.0, "web", 16);
        tile.add_session(4.0, "tv", 16);
        tile.add_session(5.0, "web", 16);
        let mut out = Vec::new();
        tile.encode(&mut out);
        assert_eq!(Tile::decode(&out), Some(tile));
    }

    #[test]
    fn devices_past_the_cap_share_one_bucket() {
        let mut tile = Tile::default();
        assert!(tile.add_session(1.0, "a", 2) && tile.add_session(1.0, "b", 2));
        assert!(!tile.add_session(1.0, "c", 2) && !tile.add_session(1.0, "d", 2));
        assert!(tile.add_session(1.0, "a", 2));
        assert_eq!(tile.devices, vec![("a".into(), 2), ("b".into(), 1), (OTHER_DEVICE.into(), 2)]);
    }

    #[test]
    fn tiles_split_like_python_floor_division() {
        assert_eq!(tile_of(7199.999999, 3600.0), 1);
        assert_eq!(tile_of(7200.0, 3600.0), 2);
        assert_eq!(tile_of(0.0, 3600.0), 0);
    }
}
