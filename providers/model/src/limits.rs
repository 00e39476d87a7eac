//! Size limits on input plumb does not control, set once from
//! `plumb.yaml`'s `limits:` and read wherever desired files or live
//! listings are read. They are process-wide (not passed through every
//! call) because the readers are plain helpers shared by every provider,
//! and one process audits under one configuration.

use std::sync::atomic::{AtomicU64, Ordering};

/// Default `limits.max_file_size`: 64 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;
/// Default `limits.max_live_bytes`: 256 MiB.
pub const DEFAULT_MAX_LIVE_BYTES: u64 = 256 * 1024 * 1024;

static MAX_FILE_SIZE: AtomicU64 = AtomicU64::new(DEFAULT_MAX_FILE_SIZE);
static MAX_LIVE_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_MAX_LIVE_BYTES);

/// Sets both limits (bytes).
pub fn set(max_file_size: u64, max_live_bytes: u64) {
    MAX_FILE_SIZE.store(max_file_size, Ordering::SeqCst);
    MAX_LIVE_BYTES.store(max_live_bytes, Ordering::SeqCst);
}

/// The largest desired file read.
pub fn max_file_size() -> u64 {
    MAX_FILE_SIZE.load(Ordering::SeqCst)
}

/// The most bytes one live listing (a plugin's output, one API answer) may
/// have.
pub fn max_live_bytes() -> u64 {
    MAX_LIVE_BYTES.load(Ordering::SeqCst)
}

/// `bytes` for messages: `64 MiB`, `1.5 GiB`, `900 bytes`.
pub fn human(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    match bytes {
        b if b >= 1024 * 1024 * 1024 => format!("{:.1} GiB", b as f64 / MIB / 1024.0),
        b if b >= 1024 * 1024 => format!("{:.1} MiB", b as f64 / MIB),
        b if b >= 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}
