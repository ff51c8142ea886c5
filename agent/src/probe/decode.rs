//! Raw ring-buffer records → (tuple, time, observation).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use connlog_common::{FAMILY_V4, FAMILY_V6, RawEvent, kind};

use super::tracker::Observation;
use crate::{MonoNanos, Tuple};

/// Decodes one record; `None` for a short record or an unknown kind/family.
pub(crate) fn decode(
    bytes: &[u8],
    rst_reasons: &HashMap<u32, String>,
) -> Option<(Tuple, MonoNanos, Observation)> {
    if bytes.len() < size_of::<RawEvent>() {
        return None;
    }
    // SAFETY: the length is checked above; RawEvent is Pod (any bytes are
    // valid) and read_unaligned has no alignment requirement.
    let ev: RawEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let addr = |a: [u8; 16]| -> Option<IpAddr> {
        match ev.family {
            FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
            FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from(a))),
            _ => None,
        }
    };
    let tuple = Tuple::new(
        SocketAddr::new(addr(ev.client_addr)?, ev.client_port),
        SocketAddr::new(addr(ev.server_addr)?, ev.server_port),
    );
    let obs = match ev.kind {
        kind::SYN => Observation::Syn { isn: ev.seq },
        kind::SYN_ACK => Observation::SynAck,
        kind::RST_IN => Observation::ClientRst,
        kind::ESTABLISHED => Observation::Established { cookie: ev.cookie },
        kind::RECEIVE_RESET => Observation::ReceiveReset { cookie: ev.cookie },
        kind::SEND_RESET => Observation::ServerRst {
            reason: rst_reasons
                .get(&ev.reason)
                .cloned()
                .unwrap_or_else(|| ev.reason.to_string()),
        },
        kind::LISTEN_OVERFLOW => Observation::ListenOverflow,
        _ => return None,
    };
    Some((tuple, MonoNanos(ev.ts), obs))
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

    #[test]
    fn decodes_v4_and_v6() {
        let mut ev = RawEvent {
            ts: 42,
            client_port: 40000,
            server_port: 443,
            family: FAMILY_V4,
            kind: kind::SYN,
            seq: 7,
            ..RawEvent::default()
        };
        ev.client_addr[..4].copy_from_slice(&[198, 18, 0, 2]);
        ev.server_addr[..4].copy_from_slice(&[198, 18, 0, 1]);
        let (t, at, obs) = decode(&bytes(&ev), &HashMap::new()).unwrap();
        assert_eq!(t.to_string(), "198.18.0.2:40000 -> 198.18.0.1:443");
        assert_eq!((at, obs), (MonoNanos(42), Observation::Syn { isn: 7 }));

        ev.family = FAMILY_V6;
        ev.kind = kind::SEND_RESET;
        ev.reason = 3;
        ev.client_addr = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
        ev.server_addr = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        let reasons = HashMap::from([(3, "TCP_RFC7323_PAWS".to_string())]);
        let (t, _, obs) = decode(&bytes(&ev), &reasons).unwrap();
        assert_eq!(t.to_string(), "[fd00::2]:40000 -> [fd00::1]:443");
        assert_eq!(
            obs,
            Observation::ServerRst {
                reason: "TCP_RFC7323_PAWS".into()
            }
        );
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        let ev = RawEvent {
            family: FAMILY_V4,
            kind: 200,
            ..RawEvent::default()
        };
        assert!(decode(&bytes(&ev), &HashMap::new()).is_none());
        assert!(decode(&bytes(&ev)[..10], &HashMap::new()).is_none());
        let ev = RawEvent {
            family: 9,
            kind: kind::SYN,
            ..RawEvent::default()
        };
        assert!(decode(&bytes(&ev), &HashMap::new()).is_none());
    }
}
