//! The attempt table's rules and bound: what a retransmitted SYN and a new
//! ISN do, and that a flood of SYNs leaves at most `max_pending` entries,
//! with every eviction counted and every survivor swept as a timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use connlog_common::kind;
use tokio::sync::mpsc;

use super::*;
use crate::probe::claims::Claims;
use crate::probe::sweep::Sweeper;
use crate::probe::tracker::Tracker;
use crate::probe::{Counters, TcpEvent, TcpFailureDetail};

#[test]
fn retransmitted_syn_is_the_same_attempt_and_a_new_isn_a_new_one() {
    let mut h = Harness::new();
    let syn = |isn| v4(C4, S4, 6, 0, &tcp(40010, WATCHED, isn, SYN));
    let synack = v4(S4, C4, 6, 0, &tcp(WATCHED, 40010, 1, SYN | ACK));
    assert!(h.run(TC_INGRESS, &syn(100)).is_empty());
    assert!(h.run(TC_EGRESS, &synack).is_empty());
    let first = h.attempt(&key4(40010)).unwrap();
    // Same ISN: a retransmission; the attempt keeps its first SYN time.
    assert!(h.run(TC_INGRESS, &syn(100)).is_empty());
    assert!(h.run(TC_EGRESS, &synack).is_empty());
    assert_eq!(
        h.attempt(&key4(40010)).unwrap(),
        Attempt {
            synacks: 2,
            ..first
        }
    );
    // New ISN while pending: the old attempt is reported, once.
    let ev = h.run(TC_INGRESS, &syn(200));
    assert_eq!(ev.len(), 1);
    let e = ev[0];
    assert_eq!(
        (e.kind, e.tuple, e.syn_at, e.synacks),
        (kind::SUPERSEDED, key4(40010), first.syn_at, 2)
    );
    assert!(e.ts >= first.syn_at);
    let second = h.attempt(&key4(40010)).unwrap();
    assert_eq!((second.isn, second.synacks, second.closed_at), (200, 0, 0));
    assert!(second.syn_at >= e.ts);

    // Closed (its outcome reported): a new ISN replaces it silently; its
    // own retransmissions change nothing.
    {
        let map = h.ebpf.map_mut(names::ATTEMPTS).unwrap();
        let mut map: BpfHashMap<_, AttemptKey, Attempt> = BpfHashMap::try_from(map).unwrap();
        let closed = Attempt {
            closed_at: second.syn_at + 1,
            ..second
        };
        map.insert(key4(40010), closed, 0).unwrap();
    }
    assert!(h.run(TC_INGRESS, &syn(200)).is_empty());
    assert_ne!(h.attempt(&key4(40010)).unwrap().closed_at, 0);
    assert!(h.run(TC_INGRESS, &syn(300)).is_empty());
    let third = h.attempt(&key4(40010)).unwrap();
    assert_eq!((third.isn, third.closed_at), (300, 0));
}

/// 600 SYNs from distinct ports into a 64-entry table: the table stays
/// within its size, every attempt it lost is counted, and a sweep after
/// `syn_timeout` reports each survivor once as `syn-dropped`.
#[test]
fn the_table_is_bounded_and_evictions_are_counted() {
    const SYNS: u16 = 600;
    const MAX: usize = 64;
    let config = ProbeConfig {
        max_pending: MAX,
        ..ProbeConfig::default()
    };
    let mut h = Harness::with(&config);
    for i in 0..SYNS {
        let frame = v4(C4, S4, 6, 0, &tcp(20000 + i, WATCHED, u32::from(i), SYN));
        assert!(h.run(TC_INGRESS, &frame).is_empty());
    }
    let left = h.attempts().len();
    assert!((MAX / 2..=MAX).contains(&left), "{left} entries left");

    let (attempts, counts) = loader::take_attempts(&mut h.ebpf).unwrap();
    let counters = Arc::new(Counters::default());
    let (tx, mut rx) = mpsc::channel(1024);
    let syn_timeout = Duration::from_millis(1);
    let claims = Arc::new(Claims::default());
    let mut sweeper = Sweeper {
        claims: claims.clone(),
        attempts,
        counts,
        tracker: Tracker::new(syn_timeout),
        capacity: MAX,
        period: syn_timeout,
        tx,
        counters: counters.clone(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    std::thread::sleep(syn_timeout);
    sweeper.sweep();
    let evicted = counters.table_full.load(Ordering::Relaxed);
    let tracked = counters.tracked.load(Ordering::Relaxed);
    let mut timeouts = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        timeouts.push(ev);
    }
    // Every survivor is reported once, and the sweep evicted none of them
    // (it never writes the map: an update from userspace would take a fresh
    // LRU node and evict another entry of the full table).
    assert_eq!(timeouts.len(), left);
    assert_eq!(tracked, left as u64);
    assert_eq!(entries(&sweeper).len(), left);
    assert_eq!(evicted, u64::from(SYNS) - tracked);
    for ev in &timeouts {
        assert!(
            matches!(
                ev,
                TcpEvent::Failed {
                    code: crate::FailureCode::TcpTimeout,
                    detail: TcpFailureDetail::SynDropped,
                    synack_retransmits: 0,
                    cookie: None,
                    ..
                }
            ),
            "{ev:?}"
        );
    }
    // Reported: a second sweep reports nothing; the counts still add up.
    sweeper.sweep();
    assert!(rx.try_recv().is_err());
    let evicted = counters.table_full.load(Ordering::Relaxed);
    let tracked = counters.tracked.load(Ordering::Relaxed);
    assert_eq!(evicted + tracked, u64::from(SYNS));

    // A new ISN on a timed-out attempt: the kernel still reports the old
    // attempt as superseded, and the reader drops that second report.
    let Some((key, old)) = entries(&sweeper).into_iter().next() else {
        panic!("no attempt left");
    };
    let client_port = key.client_port;
    let frame = v4(C4, S4, 6, 0, &tcp(client_port, WATCHED, old.isn + 1, SYN));
    let ev = h.run(TC_INGRESS, &frame);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].kind, ev[0].tuple, ev[0].syn_at),
        (kind::SUPERSEDED, key, old.syn_at)
    );
    let timeout_ns = syn_timeout.as_nanos() as u64;
    assert_eq!(
        claims.report(&ev[0], timeout_ns),
        crate::probe::claims::Report::No
    );
    // The new attempt on that tuple times out and is reported in its turn.
    std::thread::sleep(syn_timeout);
    sweeper.sweep();
    let Ok(TcpEvent::Failed { syn_at, .. }) = rx.try_recv() else {
        panic!("the new attempt was not reported");
    };
    assert!(syn_at.is_some_and(|s| s.0 > old.syn_at));
    assert!(rx.try_recv().is_err());
}

/// The attempt table as the sweeper holds it.
fn entries(sweeper: &Sweeper) -> Vec<(AttemptKey, Attempt)> {
    sweeper.attempts.iter().map(Result::unwrap).collect()
}
