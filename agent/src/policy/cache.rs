//! The policy's judgement per presented chain, so a client that reconnects
//! with the same chain costs one ECDSA/RSA verification (its handshake
//! signature) instead of two or more (plus the chain's signatures), and no
//! certificate parsing or field formatting.
//!
//! Sound because a [`Judgement`] is a pure function of the key: every check
//! in it reads the chain only, webpki is asked at a time derived from the
//! chain itself (see `checks::time_inside`), the trust store, CRLs and
//! rules only change on reload, which builds a new policy with an empty
//! cache, and CRL expiry is not enforced. The clock is read on every
//! connection, outside the cache ([`Judgement::at`]). Bounded: cleared when
//! full.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::{ClientCertInfo, FailureCode};

/// Chains remembered per listener (≈ 500 bytes each with the leaf's fields).
const CAPACITY: usize = 4096;

/// SHA-256 over the presented chain, each certificate length-prefixed.
pub(crate) type ChainKey = [u8; 32];

/// What the policy decided about one chain, apart from the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Judgement {
    /// The first code by precedence among the checks that do not read the
    /// clock.
    pub(crate) code: Option<FailureCode>,
    /// When expiry is judged: the path's validity window (Unix seconds).
    pub(crate) window: Option<super::checks::Window>,
    /// The leaf's record fields, when it parses.
    pub(crate) leaf: Option<ClientCertInfo>,
}

impl Judgement {
    /// The code at `now` (Unix seconds): the clock-free code or the
    /// validity window's, whichever comes first by precedence.
    pub(crate) fn at(&self, now: i64) -> Option<FailureCode> {
        let clock = self.window.and_then(|w| w.check(now));
        self.code.into_iter().chain(clock).min()
    }
}

#[derive(Debug, Default)]
pub(crate) struct JudgementCache {
    judgements: Mutex<HashMap<ChainKey, Arc<Judgement>>>,
}

impl JudgementCache {
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

    pub(crate) fn get(&self, key: &ChainKey) -> Option<Arc<Judgement>> {
        self.judgements.lock().ok()?.get(key).cloned()
    }

    pub(crate) fn put(&self, key: ChainKey, judgement: Arc<Judgement>) {
        if let Ok(mut map) = self.judgements.lock() {
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(key, judgement);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.judgements.lock().map_or(0, |map| map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::super::checks::Window;
    use super::*;

    fn judged(code: Option<FailureCode>) -> Arc<Judgement> {
        Arc::new(Judgement {
            code,
            window: None,
            leaf: None,
        })
    }

    #[test]
    fn remembers_and_stays_bounded() {
        let cache = JudgementCache::default();
        let a = JudgementCache::key(&[b"leaf", b"int"]);
        assert_ne!(a, JudgementCache::key(&[b"leafi", b"nt"]));
        assert_eq!(cache.get(&a), None);
        cache.put(a, judged(Some(FailureCode::ClientCertUntrusted)));
        assert_eq!(
            cache.get(&a).unwrap().code,
            Some(FailureCode::ClientCertUntrusted)
        );
        for i in 0..CAPACITY as u32 + 1 {
            cache.put(JudgementCache::key(&[&i.to_be_bytes()]), judged(None));
        }
        assert!(cache.judgements.lock().unwrap().len() <= CAPACITY);
    }

    #[test]
    fn the_clock_is_read_at_every_use() {
        let j = Judgement {
            code: None,
            window: Some(Window {
                not_before: 100,
                not_after: 200,
            }),
            leaf: None,
        };
        assert_eq!(j.at(99), Some(FailureCode::ClientCertNotYetValid));
        assert_eq!(j.at(100), None);
        assert_eq!(j.at(200), None);
        assert_eq!(j.at(201), Some(FailureCode::ClientCertExpired));
    }

    #[test]
    fn precedence_holds_between_the_cached_code_and_the_clock() {
        let window = Some(Window {
            not_before: 100,
            not_after: 200,
        });
        // Untrusted comes before Expired; Expired before IntentInvalid.
        let untrusted = Judgement {
            code: Some(FailureCode::ClientCertUntrusted),
            window,
            leaf: None,
        };
        assert_eq!(untrusted.at(300), Some(FailureCode::ClientCertUntrusted));
        let intent = Judgement {
            code: Some(FailureCode::ClientCertIntentInvalid),
            window,
            leaf: None,
        };
        assert_eq!(intent.at(300), Some(FailureCode::ClientCertExpired));
        assert_eq!(intent.at(150), Some(FailureCode::ClientCertIntentInvalid));
    }
}
