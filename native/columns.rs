//! Typed rows of history files (Parquet, CSV) → events, through the same checks as a Kafka
//! record's JSON (`wire::validate`): a row is read as the JSON object of its non-null fields,
//! so a history load judges rows exactly as the stream judges records. Python hands the
//! columns over as Arrow buffers (`stream_features/history/columns.py` normalises their types);
//! every row these checks are unsure about goes to Python's validator, as in the stream.

use std::borrow::Cow;

use crate::wire::{Raw, Scalar};

/// Arrow string offsets: `string` has 32-bit ones, `large_string` 64-bit.
#[derive(Clone, Copy)]
pub enum Offsets<'a> {
    Small(&'a [u8]),
    Large(&'a [u8]),
}

/// The values of one column, by the type Python normalised it to.
#[derive(Clone, Copy)]
pub enum Values<'a> {
    /// No such column (or an all-null one): the field is absent in every row.
    Absent,
    Str {
        offsets: Offsets<'a>,
        data: &'a [u8],
    },
    F64(&'a [u8]),
    I64(&'a [u8]),
    /// Bit-packed booleans.
    Bool(&'a [u8]),
    /// Integers counting `per_second` units since the epoch (Arrow timestamps and dates).
    Seconds {
        values: &'a [u8],
        per_second: f64,
    },
    /// A type the fast path does not read (lists, structs, binary…): non-null cells go to Python.
    Other,
}

#[derive(Clone, Copy)]
pub struct Column<'a> {
    /// Validity bitmap (bit set: not null); none means no nulls.
    pub valid: Option<&'a [u8]>,
    /// The array's offset into its buffers (Arrow slices share buffers).
    pub offset: usize,
    pub values: Values<'a>,
}

impl<'a> Column<'a> {
    fn bit(bits: &[u8], index: usize) -> bool {
        bits.get(index / 8).is_some_and(|byte| byte & (1 << (index % 8)) != 0)
    }

    fn word(bytes: &[u8], index: usize) -> Option<[u8; 8]> {
        bytes.get(index * 8..index * 8 + 8)?.try_into().ok()
    }

    fn is_null(&self, row: usize) -> bool {
        matches!(self.values, Values::Absent) || self.valid.is_some_and(|bits| !Self::bit(bits, self.offset + row))
    }

    /// The cell as the JSON scalar it would be in the record's JSON (None: null, absent).
    pub fn scalar(&self, row: usize) -> Option<Scalar<'a>> {
        if self.is_null(row) {
            return None;
        }
        let at = self.offset + row;
        Some(match self.values {
            Values::Absent => return None,
            Values::Str { offsets, data } => {
                let (start, end) = match offsets {
                    Offsets::Small(bytes) => {
                        let read = |i: usize| -> Option<usize> {
                            let word: [u8; 4] = bytes.get(i * 4..i * 4 + 4)?.try_into().ok()?;
                            usize::try_from(i32::from_le_bytes(word)).ok()
                        };
                        (read(at), read(at + 1))
                    }
                    Offsets::Large(bytes) => {
                        let read = |i: usize| usize::try_from(i64::from_le_bytes(Self::word(bytes, i)?)).ok();
                        (read(at), read(at + 1))
                    }
                };
                match (start, end) {
                    (Some(start), Some(end)) => match data.get(start..end).map(std::str::from_utf8) {
                        Some(Ok(text)) => Scalar::Str(Cow::Borrowed(text)),
                        _ => Scalar::Other,
                    },
                    _ => Scalar::Other,
                }
            }
            Values::F64(bytes) => Self::word(bytes, at).map_or(Scalar::Other, |w| Scalar::Float(f64::from_le_bytes(w))),
            Values::I64(bytes) => Self::word(bytes, at).map_or(Scalar::Other, |w| Scalar::Int(i64::from_le_bytes(w))),
            Values::Bool(bits) => Scalar::Bool(Self::bit(bits, at)),
            Values::Seconds { values, per_second } => match Self::word(values, at) {
                // Exact below 2**53 units: the division is then correctly rounded, as Python's.
                Some(w) if i64::from_le_bytes(w).unsigned_abs() < (1 << 53) => {
                    let units = i64::from_le_bytes(w) as f64;
                    Scalar::Float(if per_second == 1.0 { units } else { units / per_second })
                }
                _ => Scalar::Other,
            },
            Values::Other => Scalar::Other,
        })
    }

    /// An integer cell (Kafka coordinates), None when null or not an integer.
    pub fn integer(&self, row: usize) -> Option<i64> {
        match self.scalar(row)? {
            Scalar::Int(value) => Some(value),
            _ => None,
        }
    }
}

/// The event columns of one record batch, by field name (SPEC §2).
#[derive(Default)]
pub struct EventColumns<'a> {
    pub kind: Option<Column<'a>>,
    pub customer_id: Option<Column<'a>>,
    pub timestamp: Option<Column<'a>>,
    pub event_id: Option<Column<'a>>,
    pub amount: Option<Column<'a>>,
    pub value: Option<Column<'a>>,
    pub order_id: Option<Column<'a>>,
    pub duration_seconds: Option<Column<'a>>,
    pub device: Option<Column<'a>>,
    pub status: Option<Column<'a>>,
    pub response_time_hours: Option<Column<'a>>,
    pub escalated: Option<Column<'a>>,
}

impl<'a> EventColumns<'a> {
    /// Set a column by its field name; false for a name that is not an event field.
    pub fn set(&mut self, name: &str, column: Column<'a>) -> bool {
        let slot = match name {
            "type" => &mut self.kind,
            "customer_id" => &mut self.customer_id,
            "timestamp" => &mut self.timestamp,
            "event_id" => &mut self.event_id,
            "amount" => &mut self.amount,
            "value" => &mut self.value,
            "order_id" => &mut self.order_id,
            "duration_seconds" => &mut self.duration_seconds,
            "device" => &mut self.device,
            "status" => &mut self.status,
            "response_time_hours" => &mut self.response_time_hours,
            "escalated" => &mut self.escalated,
            _ => return false,
        };
        *slot = Some(column);
        true
    }

    /// Row `row` as the fields of its JSON object (nulls and absent columns: absent fields).
    pub fn row(&self, row: usize) -> Raw<'a> {
        let cell = |column: &Option<Column<'a>>| column.as_ref().and_then(|c| c.scalar(row));
        Raw {
            kind: cell(&self.kind),
            customer_id: cell(&self.customer_id),
            timestamp: cell(&self.timestamp),
            event_id: cell(&self.event_id),
            amount: cell(&self.amount),
            value: cell(&self.value),
            order_id: cell(&self.order_id),
            duration_seconds: cell(&self.duration_seconds),
            device: cell(&self.device),
            status: cell(&self.status),
            response_time_hours: cell(&self.response_time_hours),
            escalated: cell(&self.escalated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{validate, PURCHASE};

    fn strings(texts: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let (mut offsets, mut data) = (vec![0u8; 4], Vec::new());
        for text in texts {
            data.extend_from_slice(text.as_bytes());
            offsets.extend_from_slice(&(data.len() as i32).to_le_bytes());
        }
        (offsets, data)
    }

    #[test]
    fn a_typed_row_is_its_json_object() {
        let (kind_offsets, kind_data) = strings(&["purchase", "purchase"]);
        let (id_offsets, id_data) = strings(&["c1", "c2"]);
        let amounts: Vec<u8> = [5.0f64, -1.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let micros: Vec<u8> = [10_500_000i64, 11_000_000].iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut columns = EventColumns::default();
        let string = |offsets: &'static [u8], data: &'static [u8]| Column {
            valid: None,
            offset: 0,
            values: Values::Str { offsets: Offsets::Small(offsets), data },
        };
        let leak = |v: Vec<u8>| -> &'static [u8] { Box::leak(v.into_boxed_slice()) };
        assert!(columns.set("type", string(leak(kind_offsets), leak(kind_data))));
        assert!(columns.set("customer_id", string(leak(id_offsets), leak(id_data))));
        let amount = Column { valid: None, offset: 0, values: Values::F64(leak(amounts)) };
        assert!(columns.set("amount", amount));
        let seconds = Values::Seconds { values: leak(micros), per_second: 1e6 };
        assert!(columns.set("timestamp", Column { valid: None, offset: 0, values: seconds }));
        assert!(!columns.set("partition", Column { valid: None, offset: 0, values: Values::Absent }));
        let event = validate(columns.row(0), 1e10, 0.0).unwrap();
        assert_eq!((event.kind, event.customer_id.as_str(), event.timestamp), (PURCHASE, "c1", 10.5));
        assert_eq!(event.amount, Some(5.0));
        assert!(validate(columns.row(1), 1e10, 0.0).is_none(), "a negative amount is Python's to name");
    }

    #[test]
    fn nulls_follow_the_validity_bitmap_and_the_array_offset() {
        let values: Vec<u8> = [1.0f64, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let column = Column { valid: Some(&[0b101]), offset: 1, values: Values::F64(&values) };
        assert!(column.scalar(0).is_none());
        assert!(matches!(column.scalar(1), Some(Scalar::Float(v)) if v == 3.0));
    }
}
