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
//! connection, outside the cache ([`Judgement::at`]). Bounded in entries
//! and in bytes (a hostile client can present large certificates that
//! parse, so the leaf's fields can be large): cleared when either is full.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::{ClientCertInfo, FailureCode};

/// Chains remembered per listener (≈ 500 bytes each with the leaf's
/// fields, for ordinary certificates).
const CAPACITY: usize = 4096;

/// What the remembered leaf fields may hold in all, per listener.
const CAPACITY_BYTES: usize = 8 << 20;

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

    /// Bytes this judgement holds, the leaf's text fields included.
    fn size(&self) -> usize {
        let fields = self.leaf.as_ref().map_or(0, |c| {
            [
                &c.serial,
                &c.subject,
                &c.issuer,
                &c.validity,
                &c.sha256,
                &c.sans,
            ]
            .iter()
            .map(|s| s.len())
            .sum()
        });
        std::mem::size_of::<(ChainKey, Self)>() + fields
    }
}

#[derive(Debug, Default)]
pub(crate) struct JudgementCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    judgements: HashMap<ChainKey, Arc<Judgement>>,
    bytes: usize,
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
        self.inner.lock().ok()?.judgements.get(key).cloned()
    }

    pub(crate) fn put(&self, key: ChainKey, judgement: Arc<Judgement>) {
        let size = judgement.size();
        if size > CAPACITY_BYTES {
            return;
        }
        if let Ok(mut inner) = self.inner.lock() {
            if inner.judgements.len() >= CAPACITY || inner.bytes + size > CAPACITY_BYTES {
                inner.judgements.clear();
                inner.bytes = 0;
            }
            if let Some(old) = inner.judgements.insert(key, judgement) {
                inner.bytes -= old.size();
            }
            inner.bytes += size;
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().map_or(0, |inner| inner.judgements.len())
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.inner.lock().map_or(0, |inner| inner.bytes)
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
        assert!(cache.len() <= CAPACITY);
    }

    #[test]
    fn large_leaf_fields_are_bounded_in_bytes() {
        let cache = JudgementCache::default();
        let big = "x".repeat(64 * 1024);
        let leaf = ClientCertInfo {
            serial: String::new(),
            subject: big.clone(),
            issuer: big,
            validity: String::new(),
            not_before_s: None,
            not_after_s: None,
            sha256: String::new(),
            sans: String::new(),
        };
        let judged = Arc::new(Judgement {
            code: Some(FailureCode::ClientCertUntrusted),
            window: None,
            leaf: Some(leaf),
        });
        // 128 KiB each: far fewer than CAPACITY fit in CAPACITY_BYTES.
        for i in 0..1000u32 {
            cache.put(JudgementCache::key(&[&i.to_be_bytes()]), judged.clone());
            assert!(cache.bytes() <= CAPACITY_BYTES);
        }
        assert!(cache.len() <= CAPACITY_BYTES / (128 * 1024));
        // The same key again replaces, and counts once.
        let cache = JudgementCache::default();
        let key = JudgementCache::key(&[b"one"]);
        cache.put(key, judged.clone());
        cache.put(key, judged.clone());
        assert_eq!(cache.bytes(), judged.size());
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
