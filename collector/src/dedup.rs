//! Duplicate suppression by connectionId over a window, per sink: a
//! record counts as written by a sink once that sink wrote it, so a batch
//! retried after a partial failure is written once by every sink.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hasher};
use std::time::{Duration, Instant};

/// A map keyed by [`Dedup::key`]s: already hashes (SipHash of the id), so
/// they are used as they are instead of being hashed a second time.
pub(crate) type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;
pub(crate) type KeySet = HashSet<u64, BuildHasherDefault<KeyHasher>>;

/// Passes a `u64` key through.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; this keeps any other use correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Remembers which sinks wrote which connection ids (as 64-bit hashes),
/// for `window` or until `max_ids` newer ids push them out.
pub(crate) struct Dedup {
    written: KeyMap<u64>,
    order: VecDeque<(Instant, u64)>,
    window: Duration,
    max_ids: usize,
    hasher: BuildHasherDefault<DefaultHasher>,
}

impl Dedup {
    pub(crate) fn new(window: Duration, max_ids: usize) -> Self {
        Self {
            written: KeyMap::default(),
            order: VecDeque::new(),
            window,
            max_ids: max_ids.max(1),
            hasher: BuildHasherDefault::default(),
        }
    }

    pub(crate) fn key(&self, connection_id: &str) -> u64 {
        self.hasher.hash_one(connection_id)
    }

    /// Bitmask of the sinks that already wrote this id.
    pub(crate) fn written_by(&self, key: u64) -> u64 {
        self.written.get(&key).copied().unwrap_or(0)
    }

    pub(crate) fn mark(&mut self, key: u64, sink: usize, now: Instant) {
        let bit = 1u64 << sink.min(63);
        match self.written.entry(key) {
            Entry::Occupied(mut bits) => *bits.get_mut() |= bit,
            Entry::Vacant(slot) => {
                slot.insert(bit);
                self.order.push_back((now, key));
            }
        }
    }

    /// Forgets ids older than the window or beyond the size bound.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.order.front() {
            let old = now.saturating_duration_since(at) > self.window;
            if !old && self.order.len() <= self.max_ids {
                break;
            }
            self.order.pop_front();
            self.written.remove(&key);
        }
    }

    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    pub(crate) fn len(&self) -> usize {
        self.written.len()
    }

    /// Every remembered id, oldest first: (when, key, sinks bitmask).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (Instant, u64, u64)> + '_ {
        self.order
            .iter()
            .map(|&(at, key)| (at, key, self.written_by(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_sink_and_expires() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::from_secs(10), 2);
        let a = d.key("a");
        d.mark(a, 0, t0);
        assert_eq!(d.written_by(a), 0b01);
        d.mark(a, 1, t0);
        assert_eq!(d.written_by(a), 0b11);
        let b = d.key("b");
        let c = d.key("c");
        d.mark(b, 0, t0);
        d.mark(c, 0, t0);
        d.expire(t0);
        assert_eq!(d.len(), 2, "size bound drops the oldest");
        assert_eq!(d.written_by(a), 0);
        d.expire(t0 + Duration::from_secs(11));
        assert_eq!(d.len(), 0);
    }
}
