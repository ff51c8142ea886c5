//! Raw ring-buffer records → [`TcpEvent`]s. The kernel already paired each
//! outcome with its attempt (SYN time, SYN-ACK count), so every record is
//! one event.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use connlog_common::{AttemptKey, FAMILY_V4, FAMILY_V6, NO_REASON, RawEvent, kind};

use super::tracker::timeout;
use crate::{FailureCode, MonoNanos, TcpEvent, TcpFailureDetail, Tuple};

/// Decodes one record; `None` for a short record or an unknown kind/family.
#[cfg(test)]
pub(crate) fn decode(bytes: &[u8], rst_reasons: &HashMap<u32, String>) -> Option<TcpEvent> {
    event(&parse(bytes)?, rst_reasons)
}

/// One record as the kernel wrote it; `None` if it is short.
pub(crate) fn parse(bytes: &[u8]) -> Option<RawEvent> {
    if bytes.len() < size_of::<RawEvent>() {
        return None;
    }
    // SAFETY: the length is checked above; RawEvent is Pod (any bytes are
    // valid) and read_unaligned has no alignment requirement.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
}

/// The event a record reports; `None` for an unknown kind or family.
pub(crate) fn event(ev: &RawEvent, rst_reasons: &HashMap<u32, String>) -> Option<TcpEvent> {
    let tuple = tuple_of(&ev.tuple)?;
    let at = MonoNanos(ev.ts);
    let syn_at = (ev.syn_at != 0).then_some(MonoNanos(ev.syn_at));
    let retransmits = ev.synacks.saturating_sub(1);
    let failed = |detail| TcpEvent::Failed {
        tuple,
        code: FailureCode::TcpError,
        detail,
        syn_at,
        failed_at: at,
        synack_retransmits: retransmits,
        cookie: None,
    };
    Some(match ev.kind {
        kind::ESTABLISHED => TcpEvent::Established {
            tuple,
            cookie: ev.cookie,
            syn_at: syn_at.unwrap_or(at),
            established_at: at,
            synack_retransmits: retransmits,
        },
        kind::RECEIVE_RESET => TcpEvent::Reset {
            tuple,
            cookie: ev.cookie,
            at,
        },
        kind::CLIENT_RST => failed(TcpFailureDetail::ClientRstInSynRecv),
        kind::LISTEN_OVERFLOW => failed(TcpFailureDetail::AcceptQueueOverflow),
        kind::SERVER_RST => failed(TcpFailureDetail::ServerRst((ev.reason != NO_REASON).then(
            || {
                rst_reasons
                    .get(&ev.reason)
                    .cloned()
                    .unwrap_or_else(|| ev.reason.to_string())
            },
        ))),
        kind::SUPERSEDED => timeout(tuple, ev.syn_at, ev.synacks, at),
        _ => return None,
    })
}

/// An ESTABLISHED whose attempt was already reported as a timeout
/// (`super::claims::Report::AfterTimeout`).
pub(crate) fn late_established(ev: &RawEvent) -> Option<TcpEvent> {
    Some(TcpEvent::EstablishedAfterTimeout {
        tuple: tuple_of(&ev.tuple)?,
        cookie: ev.cookie,
        syn_at: MonoNanos(ev.syn_at),
        established_at: MonoNanos(ev.ts),
    })
}

/// The kernel's tuple as the agent's; `None` for an unknown family.
pub(crate) fn tuple_of(key: &AttemptKey) -> Option<Tuple> {
    let addr = |a: [u8; 16]| -> Option<IpAddr> {
        match key.family {
            FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
            FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from(a))),
            _ => None,
        }
    };
    Some(Tuple::new(
        SocketAddr::new(addr(key.client_addr)?, key.client_port),
        SocketAddr::new(addr(key.server_addr)?, key.server_port),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(ev: &RawEvent) -> Vec<u8> {
        // SAFETY: RawEvent is plain old data without padding.
        unsafe {
            std::slice::from_raw_parts((ev as *const RawEvent).cast::<u8>(), size_of::<RawEvent>())
        }
        .to_vec()
    }

    fn v4_key() -> AttemptKey {
        let mut key = AttemptKey {
            client_port: 40000,
            server_port: 443,
            family: FAMILY_V4,
            ..AttemptKey::default()
        };
        key.client_addr[..4].copy_from_slice(&[198, 18, 0, 2]);
        key.server_addr[..4].copy_from_slice(&[198, 18, 0, 1]);
        key
    }

    #[test]
    fn established_carries_the_attempt() {
        let ev = RawEvent {
            ts: 42,
            cookie: 7,
            syn_at: 30,
            tuple: v4_key(),
            kind: kind::ESTABLISHED,
            synacks: 2,
            ..RawEvent::default()
        };
        let got = decode(&bytes(&ev), &HashMap::new()).unwrap();
        assert_eq!(
            got,
            TcpEvent::Established {
                tuple: tuple_of(&v4_key()).unwrap(),
                cookie: 7,
                syn_at: MonoNanos(30),
                established_at: MonoNanos(42),
                synack_retransmits: 1,
            }
        );
        assert_eq!(
            got.tuple().to_string(),
            "198.18.0.2:40000 -> 198.18.0.1:443"
        );
        // SYN not seen: syn_at is the ESTABLISHED time.
        let unseen = RawEvent { syn_at: 0, ..ev };
        assert!(matches!(
            decode(&bytes(&unseen), &HashMap::new()),
            Some(TcpEvent::Established {
                syn_at: MonoNanos(42),
                synack_retransmits: 1,
                ..
            })
        ));
    }

    #[test]
    fn failures_map_to_their_details() {
        let mut key = v4_key();
        key.family = FAMILY_V6;
        key.client_addr = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
        key.server_addr = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        let reasons = HashMap::from([(3, "TCP_RFC7323_PAWS".to_string())]);
        for (kind, reason, code, detail) in [
            (
                kind::CLIENT_RST,
                0,
                FailureCode::TcpError,
                TcpFailureDetail::ClientRstInSynRecv,
            ),
            (
                kind::LISTEN_OVERFLOW,
                0,
                FailureCode::TcpError,
                TcpFailureDetail::AcceptQueueOverflow,
            ),
            (
                kind::SERVER_RST,
                3,
                FailureCode::TcpError,
                TcpFailureDetail::ServerRst(Some("TCP_RFC7323_PAWS".into())),
            ),
            (
                kind::SERVER_RST,
                99,
                FailureCode::TcpError,
                TcpFailureDetail::ServerRst(Some("99".into())),
            ),
            // A kernel whose tcp_send_reset has no reason.
            (
                kind::SERVER_RST,
                NO_REASON,
                FailureCode::TcpError,
                TcpFailureDetail::ServerRst(None),
            ),
            (
                kind::SUPERSEDED,
                0,
                FailureCode::TcpTimeout,
                TcpFailureDetail::SynAckUnanswered,
            ),
        ] {
            let ev = RawEvent {
                ts: 50,
                syn_at: 10,
                tuple: key,
                kind,
                synacks: 3,
                reason,
                ..RawEvent::default()
            };
            let got = decode(&bytes(&ev), &reasons).unwrap();
            assert_eq!(
                got,
                TcpEvent::Failed {
                    tuple: tuple_of(&key).unwrap(),
                    code,
                    detail,
                    syn_at: Some(MonoNanos(10)),
                    failed_at: MonoNanos(50),
                    synack_retransmits: 2,
                    cookie: None,
                }
            );
            assert_eq!(got.tuple().to_string(), "[fd00::2]:40000 -> [fd00::1]:443");
        }
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        let ev = RawEvent {
            tuple: v4_key(),
            kind: 200,
            ..RawEvent::default()
        };
        assert!(decode(&bytes(&ev), &HashMap::new()).is_none());
        assert!(decode(&bytes(&ev)[..10], &HashMap::new()).is_none());
        let mut bad = ev;
        bad.kind = kind::ESTABLISHED;
        bad.tuple.family = 9;
        assert!(decode(&bytes(&bad), &HashMap::new()).is_none());
    }
}
