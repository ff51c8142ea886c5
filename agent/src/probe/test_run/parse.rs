//! What the TC programs parse: which frames open an attempt (ingress SYN)
//! or count a SYN-ACK (egress), through every header layout they support,
//! and that nothing else leaves a trace.

use super::*;

#[test]
fn syn_opens_an_attempt_and_synack_counts_on_it() {
    let mut h = Harness::new();
    let syn = v4(C4, S4, 6, 0, &tcp(40000, WATCHED, 1000, SYN));
    assert!(h.run(TC_INGRESS, &syn).is_empty(), "no ring event");
    let a = h.attempt(&key4(40000)).expect("attempt opened");
    assert_eq!((a.isn, a.synacks, a.closed_at), (1000, 0, 0));
    assert!(a.syn_at > 0);
    assert_eq!(h.attempts().len(), 1);

    // SYN-ACK: counted at egress from the watched port (ends swapped back
    // to the server's view); ignored at ingress.
    let synack = v4(S4, C4, 6, 0, &tcp(WATCHED, 40000, 5000, SYN | ACK));
    assert!(h.run(TC_EGRESS, &synack).is_empty());
    assert!(h.run(TC_INGRESS, &synack).is_empty());
    assert_eq!(h.attempt(&key4(40000)).unwrap().synacks, 1);

    // An RST at ingress is left to kfree_skb (it knows whether it reset a
    // request socket): nothing here.
    let rst = v4(C4, S4, 6, 0, &tcp(40000, WATCHED, 1001, RST | ACK));
    assert!(h.run(TC_INGRESS, &rst).is_empty());
    assert_eq!(
        h.attempt(&key4(40000)).unwrap(),
        Attempt { synacks: 1, ..a }
    );

    // Nothing for: other ports, plain ACKs and data, a SYN at egress, a
    // SYN-ACK from another port, UDP, non-first fragments, ARP.
    h.clear();
    for (program, frame) in [
        (TC_INGRESS, v4(C4, S4, 6, 0, &tcp(40000, 80, 1, SYN))),
        (TC_INGRESS, v4(C4, S4, 6, 0, &tcp(40000, WATCHED, 1, ACK))),
        (
            TC_INGRESS,
            v4(C4, S4, 6, 0, &tcp(40000, WATCHED, 1, ACK | PSH)),
        ),
        (TC_INGRESS, v4(C4, S4, 17, 0, &tcp(40000, WATCHED, 1, SYN))),
        (TC_INGRESS, v4(C4, S4, 6, 100, &tcp(40000, WATCHED, 1, SYN))),
        (TC_INGRESS, eth(0x0806, &[0u8; 28])),
        (TC_EGRESS, syn.clone()),
        (TC_EGRESS, v4(S4, C4, 6, 0, &tcp(80, 40000, 1, SYN | ACK))),
    ] {
        assert!(h.run(program, &frame).is_empty(), "{frame:02x?}");
        assert!(h.attempts().is_empty(), "{program}: {frame:02x?}");
    }
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let mut h = Harness::new();
    let seg = tcp(40001, WATCHED, 77, SYN);
    let plain = v6(C6, S6, &[], &seg);
    let walked = v6(
        C6,
        S6,
        &[
            (0, opts_hdr(0)),
            (43, opts_hdr(1)),
            (60, opts_hdr(2)),
            (44, frag_hdr(0)),
        ],
        &seg,
    );
    for frame in [plain, walked] {
        assert!(h.run(TC_INGRESS, &frame).is_empty());
        let got = h.attempts();
        assert_eq!(got.len(), 1, "{frame:02x?}");
        assert_eq!((got[0].0, got[0].1.isn), (key6(40001), 77));
        h.clear();
    }
    // A non-first fragment, an unknown next header (59: none), a header
    // claiming more bytes than the frame has.
    for frame in [
        v6(C6, S6, &[(44, frag_hdr(3))], &seg),
        v6(C6, S6, &[(59, opts_hdr(0))], &seg),
        v6(
            C6,
            S6,
            &[(0, {
                let mut h = opts_hdr(0);
                h[1] = 200;
                h
            })],
            &seg,
        ),
    ] {
        assert!(h.run(TC_INGRESS, &frame).is_empty(), "{frame:02x?}");
        assert!(h.attempts().is_empty(), "{frame:02x?}");
    }
}

/// 802.1Q and QinQ (802.1ad outer + 802.1Q inner) tags in the frame, as
/// on a trunk without VLAN offload; a third tag is not parsed.
#[test]
fn vlan_tagged_frames_are_parsed() {
    let mut h = Harness::new();
    let syn4 = v4(C4, S4, 6, 0, &tcp(40002, WATCHED, 5, SYN));
    let syn6 = v6(C6, S6, &[(0, opts_hdr(0))], &tcp(40002, WATCHED, 6, SYN));
    let synack4 = v4(S4, C4, 6, 0, &tcp(WATCHED, 40002, 9, SYN | ACK));
    let dot1q = [(0x8100, 100)];
    let qinq = [(0x88a8, 200), (0x8100, 100)];
    for tags in [&dot1q[..], &qinq[..]] {
        assert!(h.run(TC_INGRESS, &vlan(tags, &syn4)).is_empty());
        assert!(h.run(TC_EGRESS, &vlan(tags, &synack4)).is_empty());
        assert!(h.run(TC_INGRESS, &vlan(tags, &syn6)).is_empty());
        let mut got = h.attempts();
        got.sort_by_key(|(k, _)| k.family);
        let summary: Vec<_> = got.iter().map(|(k, a)| (*k, a.isn, a.synacks)).collect();
        assert_eq!(
            summary,
            [(key4(40002), 5, 1), (key6(40002), 6, 0)],
            "{tags:?}"
        );
        h.clear();
    }
    let triple = [(0x88a8, 1), (0x8100, 2), (0x8100, 3)];
    assert!(h.run(TC_INGRESS, &vlan(&triple, &syn4)).is_empty());
    // A tag with nothing after it.
    assert!(h.run(TC_INGRESS, &vlan(&dot1q, &syn4)[..18]).is_empty());
    assert!(h.attempts().is_empty());
}

/// L3 devices (tun, wireguard): the packet starts at the IP header; the
/// `_l3` programs parse it, the Ethernet ones do not, and vice versa.
#[test]
fn l3_device_packets_are_parsed_by_the_l3_programs() {
    let mut h = Harness::new();
    let syn4 = v4(C4, S4, 6, 0, &tcp(40003, WATCHED, 11, SYN));
    let syn6 = v6(C6, S6, &[(60, opts_hdr(1))], &tcp(40003, WATCHED, 12, SYN));
    let synack6 = v6(S6, C6, &[], &tcp(WATCHED, 40003, 13, SYN | ACK));
    assert!(h.run(TC_INGRESS_L3, &l3(&syn4)).is_empty());
    assert!(h.run(TC_INGRESS_L3, &l3(&syn6)).is_empty());
    assert!(h.run(TC_EGRESS_L3, &l3(&synack6)).is_empty());
    let mut got = h.attempts();
    got.sort_by_key(|(k, _)| k.family);
    let summary: Vec<_> = got.iter().map(|(k, a)| (*k, a.isn, a.synacks)).collect();
    assert_eq!(summary, [(key4(40003), 11, 0), (key6(40003), 12, 1)]);
    h.clear();
    // Each variant ignores the other's framing.
    assert!(h.run(TC_INGRESS_L3, &syn4).is_empty());
    assert!(h.run(TC_INGRESS, &l3(&syn6)).is_empty());
    // Truncated L3 packets.
    let packet = l3(&syn4);
    for len in 14..packet.len() {
        if let Some(events) = h.try_run(TC_INGRESS_L3, &packet[..len]) {
            assert!(events.is_empty(), "prefix {len}");
        }
    }
    assert!(h.attempts().is_empty());
}

#[test]
fn truncated_and_garbage_frames_are_ignored() {
    let mut h = Harness::new();
    let frames = [
        v4(C4, S4, 6, 0, &tcp(40000, WATCHED, 1, SYN)),
        v6(C6, S6, &[(0, opts_hdr(0))], &tcp(40000, WATCHED, 1, SYN)),
    ];
    // Ethernet + the whole IP header: the shortest frame the kernel's test
    // runner accepts with an IP ethertype.
    for (full, min_accepted) in frames.iter().zip([14 + 20, 14 + 40]) {
        for len in 14..full.len() {
            match h.try_run(TC_INGRESS, &full[..len]) {
                Some(events) => assert!(events.is_empty(), "prefix {len}"),
                None => assert!(len < min_accepted, "refused prefix {len}"),
            }
        }
        assert!(h.attempts().is_empty());
        assert!(h.run(TC_INGRESS, full).is_empty());
        assert_eq!(h.attempts().len(), 1);
        h.clear();
    }
    // An IPv4 header claiming 60 bytes (IHL 15) in a 54-byte frame.
    let mut long_ihl = frames[0].clone();
    long_ihl[14] = 0x4f;
    assert!(h.run(TC_INGRESS, &long_ihl).is_empty());
    // Deterministic garbage, some of it with IP or VLAN ethertypes.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..300 {
        let len = 14 + (i % 120);
        let mut frame: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        match i % 6 {
            0 => frame[12..14].copy_from_slice(&[0x08, 0]),
            2 => frame[12..14].copy_from_slice(&[0x86, 0xdd]),
            4 => frame[12..14].copy_from_slice(&[0x81, 0x00]),
            _ => {}
        }
        for program in [TC_INGRESS, TC_EGRESS, TC_INGRESS_L3, TC_EGRESS_L3] {
            match h.try_run(program, &frame) {
                Some(events) => assert!(events.is_empty(), "{frame:02x?}"),
                None => assert!(
                    len < 14 + 40 && (i % 6 == 0 || i % 6 == 2),
                    "refused {frame:02x?}"
                ),
            }
        }
    }
    // Random bytes could form a SYN to port 443 only by a 2^-20 chance;
    // with this seed none does.
    assert!(h.attempts().is_empty());
}
