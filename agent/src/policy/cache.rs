//! webpki's verdict per presented chain, so a client that reconnects with
//! the same chain costs one ECDSA/RSA verification (its handshake
//! signature) instead of two or more (plus the chain's signatures).
//!
//! Sound because the verdict is a pure function of the key: the policy
//! asks webpki at a time derived from the chain itself (see
//! `checks::time_inside`), the trust store and CRLs only change on reload,
//! which builds a new policy with an empty cache, and CRL expiry is not
//! enforced. Expiry against the clock is checked on every connection,
//! outside the cache. Bounded: cleared when full.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::FailureCode;

/// Chains remembered per listener (≈ 100 bytes each).
const CAPACITY: usize = 4096;

/// SHA-256 over the presented chain, each certificate length-prefixed.
pub(crate) type ChainKey = [u8; 32];

#[derive(Debug, Default)]
pub(crate) struct PathCache {
    verdicts: Mutex<HashMap<ChainKey, Option<FailureCode>>>,
}

impl PathCache {
    pub(crate) fn key(chain: &[&[u8]]) -> ChainKey {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for der in chain {
            ctx.update(&(der.len() as u64).to_be_bytes());
            ctx.update(der);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    /// The remembered verdict: `Some(None)` = webpki accepted the chain.
    pub(crate) fn get(&self, key: &ChainKey) -> Option<Option<FailureCode>> {
        self.verdicts.lock().ok()?.get(key).copied()
    }

    pub(crate) fn put(&self, key: ChainKey, verdict: Option<FailureCode>) {
        if let Ok(mut map) = self.verdicts.lock() {
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(key, verdict);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_stays_bounded() {
        let cache = PathCache::default();
        let a = PathCache::key(&[b"leaf", b"int"]);
        assert_ne!(a, PathCache::key(&[b"leafi", b"nt"]));
        assert_eq!(cache.get(&a), None);
        cache.put(a, Some(FailureCode::ClientCertUntrusted));
        assert_eq!(cache.get(&a), Some(Some(FailureCode::ClientCertUntrusted)));
        for i in 0..CAPACITY as u32 + 1 {
            cache.put(PathCache::key(&[&i.to_be_bytes()]), None);
        }
        assert!(cache.verdicts.lock().unwrap().len() <= CAPACITY);
    }
}
