//! From kernel observations to [`TcpEvent`]s: the attempts between a SYN and
//! their outcome, in a bounded table.
//!
//! - A SYN opens an attempt. A SYN with the same ISN on a tracked tuple is a
//!   retransmission (ignored); a different ISN is a new attempt, and the old
//!   one is closed as a timeout.
//! - SYN-ACKs count towards `synack_retransmits` (all but the first).
//! - ESTABLISHED, a client RST, a server RST or an accept-queue overflow
//!   closes the attempt; `expire` closes those older than `syn_timeout`.
//! - Closed attempts are remembered (bounded, for two minutes) so that the
//!   client's SYN retransmissions after a timeout do not open new attempts.

use std::collections::HashMap;
use std::time::Duration;

use crate::{FailureCode, MonoNanos, TcpEvent, TcpFailureDetail, Tuple};

/// How long a closed attempt's ISN is remembered: longer than Linux's
/// default SYN retry span (~127 s with `tcp_syn_retries` = 6 is cut to this).
const REMEMBER_CLOSED: Duration = Duration::from_secs(120);

/// What the kernel programs saw, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Observation {
    Syn { isn: u32 },
    SynAck,
    ClientRst,
    Established { cookie: u64 },
    ReceiveReset { cookie: u64 },
    ServerRst { reason: String },
    ListenOverflow,
}

#[derive(Debug, Clone, Copy)]
struct Attempt {
    isn: u32,
    syn_at: MonoNanos,
    synacks: u32,
}

#[derive(Debug, Clone, Copy)]
struct Closed {
    isn: u32,
    syn_at: MonoNanos,
    closed_at: MonoNanos,
}

pub(crate) struct Tracker {
    syn_timeout: Duration,
    max: usize,
    pending: HashMap<Tuple, Attempt>,
    closed: HashMap<Tuple, Closed>,
    /// SYNs not tracked because the table was full.
    pub(crate) table_full: u64,
}

impl Tracker {
    pub(crate) fn new(syn_timeout: Duration, max: usize) -> Self {
        Self {
            syn_timeout,
            max,
            pending: HashMap::new(),
            closed: HashMap::new(),
            table_full: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Feeds one observation; returns the events it completes (at most two:
    /// a superseded attempt and nothing else, or one outcome).
    pub(crate) fn observe(
        &mut self,
        tuple: Tuple,
        at: MonoNanos,
        obs: Observation,
    ) -> Vec<TcpEvent> {
        match obs {
            Observation::Syn { isn } => self.syn(tuple, at, isn),
            Observation::SynAck => {
                if let Some(a) = self.pending.get_mut(&tuple) {
                    a.synacks = a.synacks.saturating_add(1);
                }
                Vec::new()
            }
            Observation::Established { cookie } => {
                let (syn_at, synacks) = match self.pending.remove(&tuple) {
                    Some(a) => {
                        self.remember(tuple, a, at);
                        (a.syn_at, a.synacks)
                    }
                    None => match self.closed.get(&tuple) {
                        Some(c) => (c.syn_at, 0),
                        None => (at, 0),
                    },
                };
                vec![TcpEvent::Established {
                    tuple,
                    cookie,
                    syn_at,
                    established_at: at,
                    synack_retransmits: synacks.saturating_sub(1),
                }]
            }
            Observation::ReceiveReset { cookie } => {
                self.pending.remove(&tuple);
                vec![TcpEvent::Reset { tuple, cookie, at }]
            }
            Observation::ClientRst => self.fail(
                tuple,
                at,
                FailureCode::TcpError,
                TcpFailureDetail::ClientRstInSynRecv,
            ),
            Observation::ListenOverflow => self.fail(
                tuple,
                at,
                FailureCode::TcpError,
                TcpFailureDetail::AcceptQueueOverflow,
            ),
            Observation::ServerRst { reason } => self.fail(
                tuple,
                at,
                FailureCode::TcpError,
                TcpFailureDetail::ServerRst(reason),
            ),
        }
    }

    fn syn(&mut self, tuple: Tuple, at: MonoNanos, isn: u32) -> Vec<TcpEvent> {
        let mut out = Vec::new();
        match self.pending.get(&tuple) {
            Some(a) if a.isn == isn => return out,
            Some(_) => out.extend(self.timeout(tuple, at)),
            None => {
                if self.closed.get(&tuple).is_some_and(|c| c.isn == isn) {
                    return out;
                }
            }
        }
        if self.pending.len() >= self.max {
            self.table_full += 1;
            return out;
        }
        self.closed.remove(&tuple);
        self.pending.insert(
            tuple,
            Attempt {
                isn,
                syn_at: at,
                synacks: 0,
            },
        );
        out
    }

    fn fail(
        &mut self,
        tuple: Tuple,
        at: MonoNanos,
        code: FailureCode,
        detail: TcpFailureDetail,
    ) -> Vec<TcpEvent> {
        let Some(a) = self.pending.remove(&tuple) else {
            return Vec::new();
        };
        self.remember(tuple, a, at);
        vec![TcpEvent::Failed {
            tuple,
            code,
            detail,
            syn_at: Some(a.syn_at),
            failed_at: at,
            synack_retransmits: a.synacks.saturating_sub(1),
            cookie: None,
        }]
    }

    /// Closes `tuple`'s attempt as a timeout.
    fn timeout(&mut self, tuple: Tuple, now: MonoNanos) -> Option<TcpEvent> {
        let a = self.pending.remove(&tuple)?;
        self.remember(tuple, a, now);
        let detail = if a.synacks == 0 {
            TcpFailureDetail::SynDropped
        } else {
            TcpFailureDetail::SynAckUnanswered
        };
        Some(TcpEvent::Failed {
            tuple,
            code: FailureCode::TcpTimeout,
            detail,
            syn_at: Some(a.syn_at),
            failed_at: now,
            synack_retransmits: a.synacks.saturating_sub(1),
            cookie: None,
        })
    }

    fn remember(&mut self, tuple: Tuple, a: Attempt, at: MonoNanos) {
        if self.closed.len() < self.max || self.closed.contains_key(&tuple) {
            self.closed.insert(
                tuple,
                Closed {
                    isn: a.isn,
                    syn_at: a.syn_at,
                    closed_at: at,
                },
            );
        }
    }

    /// Closes every attempt older than `syn_timeout` and forgets old closed
    /// ones.
    pub(crate) fn expire(&mut self, now: MonoNanos) -> Vec<TcpEvent> {
        let timeout = nanos(self.syn_timeout);
        let due: Vec<Tuple> = self
            .pending
            .iter()
            .filter(|(_, a)| now.0.saturating_sub(a.syn_at.0) >= timeout)
            .map(|(t, _)| *t)
            .collect();
        let remember = nanos(REMEMBER_CLOSED);
        self.closed
            .retain(|_, c| now.0.saturating_sub(c.closed_at.0) < remember);
        due.into_iter()
            .filter_map(|t| self.timeout(t, now))
            .collect()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn t(port: u16) -> Tuple {
        Tuple::new(
            format!("198.18.0.2:{port}").parse().unwrap(),
            "198.18.0.1:443".parse().unwrap(),
        )
    }

    fn tracker() -> Tracker {
        Tracker::new(Duration::from_millis(100), 4)
    }

    #[test]
    fn handshake_gives_one_established() {
        let mut tr = tracker();
        assert!(
            tr.observe(t(1), MonoNanos(10), Observation::Syn { isn: 7 })
                .is_empty()
        );
        assert!(
            tr.observe(t(1), MonoNanos(11), Observation::SynAck)
                .is_empty()
        );
        let ev = tr.observe(t(1), MonoNanos(20), Observation::Established { cookie: 99 });
        assert_eq!(
            ev,
            [TcpEvent::Established {
                tuple: t(1),
                cookie: 99,
                syn_at: MonoNanos(10),
                established_at: MonoNanos(20),
                synack_retransmits: 0,
            }]
        );
        assert_eq!(tr.pending(), 0);
        assert!(tr.expire(MonoNanos(1_000 * MS)).is_empty());
    }

    #[test]
    fn unanswered_synack_times_out_once_despite_syn_retransmits() {
        let mut tr = tracker();
        tr.observe(t(1), MonoNanos(0), Observation::Syn { isn: 7 });
        tr.observe(t(1), MonoNanos(1), Observation::SynAck);
        tr.observe(t(1), MonoNanos(50 * MS), Observation::Syn { isn: 7 });
        tr.observe(t(1), MonoNanos(50 * MS), Observation::SynAck);
        assert!(tr.expire(MonoNanos(99 * MS)).is_empty());
        let ev = tr.expire(MonoNanos(100 * MS));
        assert_eq!(
            ev,
            [TcpEvent::Failed {
                tuple: t(1),
                code: FailureCode::TcpTimeout,
                detail: TcpFailureDetail::SynAckUnanswered,
                syn_at: Some(MonoNanos(0)),
                failed_at: MonoNanos(100 * MS),
                synack_retransmits: 1,
                cookie: None,
            }]
        );
        // The client's next SYN retransmission is the same attempt.
        assert!(
            tr.observe(t(1), MonoNanos(200 * MS), Observation::Syn { isn: 7 })
                .is_empty()
        );
        assert_eq!(tr.pending(), 0);
    }

    #[test]
    fn unanswered_syn_is_syn_dropped() {
        let mut tr = tracker();
        tr.observe(t(1), MonoNanos(0), Observation::Syn { isn: 7 });
        let ev = tr.expire(MonoNanos(200 * MS));
        assert!(matches!(
            &ev[..],
            [TcpEvent::Failed {
                detail: TcpFailureDetail::SynDropped,
                ..
            }]
        ));
    }

    #[test]
    fn new_isn_on_a_tuple_is_a_new_attempt() {
        let mut tr = tracker();
        tr.observe(t(1), MonoNanos(0), Observation::Syn { isn: 7 });
        tr.observe(t(1), MonoNanos(5), Observation::Established { cookie: 1 });
        assert!(
            tr.observe(t(1), MonoNanos(10), Observation::Syn { isn: 8 })
                .is_empty()
        );
        let ev = tr.observe(t(1), MonoNanos(15), Observation::Established { cookie: 2 });
        assert!(matches!(
            &ev[..],
            [TcpEvent::Established {
                cookie: 2,
                syn_at: MonoNanos(10),
                ..
            }]
        ));
        // A pending attempt superseded by a new ISN is closed as a timeout.
        tr.observe(t(2), MonoNanos(20), Observation::Syn { isn: 1 });
        let ev = tr.observe(t(2), MonoNanos(30), Observation::Syn { isn: 2 });
        assert!(matches!(
            &ev[..],
            [TcpEvent::Failed {
                code: FailureCode::TcpTimeout,
                syn_at: Some(MonoNanos(20)),
                ..
            }]
        ));
        assert_eq!(tr.pending(), 1);
    }

    #[test]
    fn failures_close_the_attempt() {
        let mut tr = tracker();
        for (port, obs, detail) in [
            (
                1,
                Observation::ClientRst,
                TcpFailureDetail::ClientRstInSynRecv,
            ),
            (
                2,
                Observation::ListenOverflow,
                TcpFailureDetail::AcceptQueueOverflow,
            ),
            (
                3,
                Observation::ServerRst {
                    reason: "NOT_SPECIFIED".into(),
                },
                TcpFailureDetail::ServerRst("NOT_SPECIFIED".into()),
            ),
        ] {
            tr.observe(t(port), MonoNanos(0), Observation::Syn { isn: 7 });
            let ev = tr.observe(t(port), MonoNanos(5), obs.clone());
            assert!(
                matches!(&ev[..], [TcpEvent::Failed { code: FailureCode::TcpError, detail: d, failed_at: MonoNanos(5), .. }] if *d == detail),
                "{ev:?}"
            );
            // A second one (retransmitted ACK overflowing again) is silent.
            assert!(tr.observe(t(port), MonoNanos(6), obs).is_empty());
        }
        assert_eq!(tr.pending(), 0);
    }

    #[test]
    fn resets_on_established_sockets_are_reported() {
        let mut tr = tracker();
        let ev = tr.observe(t(1), MonoNanos(3), Observation::ReceiveReset { cookie: 5 });
        assert_eq!(
            ev,
            [TcpEvent::Reset {
                tuple: t(1),
                cookie: 5,
                at: MonoNanos(3)
            }]
        );
    }

    #[test]
    fn table_is_bounded_and_counts_overflow() {
        let mut tr = tracker();
        for port in 1..=10 {
            tr.observe(t(port), MonoNanos(0), Observation::Syn { isn: 1 });
        }
        assert_eq!(tr.pending(), 4);
        assert_eq!(tr.table_full, 6);
        assert_eq!(tr.expire(MonoNanos(200 * MS)).len(), 4);
        assert!(tr.closed.len() <= 4);
    }
}
