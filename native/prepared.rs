//! Compare-and-set calls computed against the cached states, ready to send.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::resp::{pack_command, Args};

/// One `EVALSHA`: its customers (indexes into the batch), keys, arguments, and each customer's
/// outcome codes, valid once the call is confirmed.
pub(crate) struct Call {
    pub(crate) customers: Vec<usize>,
    pub(crate) keys: Vec<String>,
    pub(crate) args: Args,
    pub(crate) codes: Vec<Vec<u8>>,
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
