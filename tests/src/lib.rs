//! Shared helpers of the cross-crate integration tests: where the fetched
//! third-party data lives.
#![allow(clippy::missing_panics_doc)]

use std::path::PathBuf;

/// The cache that `fixtures/fetch.py` fills: `$LAURELC_CACHE`, else `~/.cache/laurelc`.
#[must_use]
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("LAURELC_CACHE") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("laurelc")
}

/// A directory of the cache that must exist; panics with the command that fills it.
#[must_use]
pub fn require(rel: &str) -> PathBuf {
    let p = cache_dir().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `python3 fixtures/fetch.py` (the README's test command does) or set LAURELC_CACHE",
        p.display()
    );
    p
}

/// The committed fixtures directory.
#[must_use]
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
}
