//! `connectionId`: unique across agents and restarts, URL-safe base64.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;

/// 18 random bytes (144 bits) from the OS, so ids never collide across agents
/// or restarts without any coordination; 24 URL-safe base64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(String);

impl ConnectionId {
    /// A fresh id. Falls back to a time-and-counter id only if the OS
    /// random source fails, which on Linux ≥ 3.17 it does not once booted.
    pub fn generate() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        if !take_random(&mut bytes) {
            fallback(&mut bytes);
        }
        Self(URL_SAFE.encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id's text, without copying it.
    pub fn into_string(self) -> String {
        self.0
    }
}

const ID_BYTES: usize = 18;
/// Ids drawn from one `getrandom` call: one system call per 64 ids
/// instead of one per id.
const POOL_IDS: usize = 64;

thread_local! {
    /// OS random bytes not yet used, and how many are left at the end.
    static POOL: std::cell::RefCell<([u8; ID_BYTES * POOL_IDS], usize)> =
        const { std::cell::RefCell::new(([0; ID_BYTES * POOL_IDS], 0)) };
}

/// Fills `out` with OS random bytes from this thread's pool; false if the
/// OS random source failed. Used bytes are zeroed in the pool.
fn take_random(out: &mut [u8; ID_BYTES]) -> bool {
    POOL.with(|pool| {
        let Ok(mut pool) = pool.try_borrow_mut() else {
            return getrandom::fill(out).is_ok();
        };
        let (bytes, left) = &mut *pool;
        if *left < ID_BYTES {
            if getrandom::fill(bytes).is_err() {
                return false;
            }
            *left = bytes.len();
        }
        let start = *left - ID_BYTES;
        out.copy_from_slice(&bytes[start..*left]);
        bytes[start..*left].fill(0);
        *left = start;
        true
    })
}

fn fallback(bytes: &mut [u8; ID_BYTES]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    bytes[..8].copy_from_slice(&now.to_le_bytes());
    bytes[8..16].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    bytes[16..].copy_from_slice(&(std::process::id() as u16).to_le_bytes());
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for ConnectionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_url_safe_and_distinct() {
        let ids: HashSet<String> = (0..10_000).map(|_| ConnectionId::generate().0).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            assert_eq!(id.len(), 24);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
        }
    }
}
