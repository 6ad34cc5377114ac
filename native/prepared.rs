//! Compare-and-set calls computed against the cached states, ready to send.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::resp::{pack_command, Args};

/// One `EVALSHA`: its customers (indexes into the batch; one customer's events may be split
/// over several calls, in order), which of each customer's records it writes, keys, arguments,
/// and the outcome codes of those records, valid once the call is confirmed.
pub(crate) struct Call {
    pub(crate) customers: Vec<usize>,
    pub(crate) ranges: Vec<(u32, u32)>,
    pub(crate) keys: Vec<String>,
    pub(crate) args: Args,
    pub(crate) codes: Vec<Vec<u8>>,
    /// What the call is expected to cost Redis (the budget's model, in microseconds).
    pub(crate) cost_us: f64,
    /// Its first customer continues the previous call's last one: send it after that call, on
    /// the same connection.
    pub(crate) continues: bool,
}

/// Compare-and-set calls computed against the cached states, ready to send.
#[pyclass(module = "stream_features._native")]
pub struct Prepared {
    pub(crate) calls: Vec<Call>,
    pub(crate) names: Vec<String>,
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

    /// `parts + 1` call indexes cutting the calls into about equal runs for parallel
    /// connections, never between a call and one that continues it.
    fn bounds(&self, parts: usize) -> Vec<usize> {
        let count = self.calls.len();
        let parts = parts.max(1);
        let mut out = vec![0];
        for part in 1..parts {
            let mut at = (count * part / parts).max(*out.last().expect("starts with 0"));
            while at < count && self.calls[at].continues {
                at += 1;
            }
            out.push(at);
        }
        out.push(count);
        out.dedup();
        out
    }

    /// The model's cost of each call, in microseconds (for benchmarks and tests).
    fn costs(&self) -> Vec<f64> {
        self.calls.iter().map(|call| call.cost_us).collect()
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
