//! The core's build identity (set by `build.rs`), exported as `_native.BUILD`.

use pyo3::prelude::*;
use pyo3::types::PyDict;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("SF_BUILD_COMMIT");
pub const PROFILE: &str = env!("SF_BUILD_PROFILE");
pub const RUSTC: &str = env!("SF_BUILD_RUSTC");

/// `{"version", "commit", "profile", "rustc"}`.
pub fn as_dict(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let info = PyDict::new(py);
    for (name, value) in [("version", VERSION), ("commit", COMMIT), ("profile", PROFILE), ("rustc", RUSTC)] {
        info.set_item(name, value)?;
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    #[test]
    fn identity_is_filled_in() {
        assert_eq!(super::VERSION, env!("CARGO_PKG_VERSION"));
        assert!(!super::COMMIT.is_empty() && !super::PROFILE.is_empty());
        assert!(super::RUSTC.starts_with("rustc") || super::RUSTC == "unknown");
    }
}
