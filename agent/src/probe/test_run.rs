//! Test 9: the TC programs under `BPF_PROG_TEST_RUN` with crafted frames —
//! SYN, SYN-ACK, RST, ACK, IPv6 with extension headers, fragments,
//! truncated and garbage frames — asserting exactly what reaches the ring.
//! Needs root (loads the real object); no attach, so nothing else sees it.

use aya::Ebpf;
use aya::maps::{MapData, RingBuf};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use connlog_common::{FAMILY_V4, FAMILY_V6, RawEvent, kind};

use super::loader::{self, TC_EGRESS, TC_INGRESS};
use crate::config::ProbeConfig;

const WATCHED: u16 = 443;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
/// `TC_ACT_UNSPEC` as the kernel reports it.
const NEXT: u32 = u32::MAX;

const C4: [u8; 4] = [198, 18, 7, 2];
const S4: [u8; 4] = [198, 18, 7, 1];
const C6: [u8; 16] = [0xfd, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const S6: [u8; 16] = [0xfd, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

fn tcp(sport: u16, dport: u16, seq: u32, flags: u8) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

fn eth(ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
    let len = (20 + l4.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&len.to_be_bytes());
    ip.extend_from_slice(&[0, 1]);
    ip.extend_from_slice(&frag.to_be_bytes());
    ip.extend_from_slice(&[64, proto, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(l4);
    eth(0x0800, &ip)
}

/// IPv6 with `exts`: (header type, header bytes including next/len).
fn v6(src: [u8; 16], dst: [u8; 16], exts: &[(u8, Vec<u8>)], l4: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let first = exts.first().map_or(6, |(t, _)| *t);
    for (i, (_, hdr)) in exts.iter().enumerate() {
        let mut h = hdr.clone();
        h[0] = exts.get(i + 1).map_or(6, |(t, _)| *t);
        body.extend_from_slice(&h);
    }
    body.extend_from_slice(l4);
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(body.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[first, 64]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(&body);
    eth(0x86dd, &ip)
}

/// An options-style extension header of `8 * (units + 1)` bytes.
fn opts_hdr(units: u8) -> Vec<u8> {
    let mut h = vec![0u8; 8 * (usize::from(units) + 1)];
    h[1] = units;
    h
}

fn frag_hdr(offset_units: u16) -> Vec<u8> {
    let mut h = vec![0u8; 8];
    h[2..4].copy_from_slice(&(offset_units << 3).to_be_bytes());
    h
}

struct Harness {
    ebpf: Ebpf,
    ring: RingBuf<MapData>,
}

impl Harness {
    fn new() -> Self {
        let (mut ebpf, _) =
            loader::open(&ProbeConfig::default()).expect("load the object (root needed)");
        loader::set_ports(&mut ebpf, &[WATCHED]).unwrap();
        for name in [TC_INGRESS, TC_EGRESS] {
            let prog: &mut SchedClassifier = ebpf.program_mut(name).unwrap().try_into().unwrap();
            prog.load().unwrap();
        }
        let ring = loader::take_ring(&mut ebpf).unwrap();
        Harness { ebpf, ring }
    }

    /// Runs `frame` through `program`; returns the events it emitted.
    fn run(&mut self, program: &str, frame: &[u8]) -> Vec<RawEvent> {
        self.try_run(program, frame)
            .unwrap_or_else(|| panic!("the kernel refused a {}-byte frame", frame.len()))
    }

    /// Like `run`, but `None` if the kernel's test runner refuses the frame
    /// (it wants a whole IPv4 / IPv6 header after an IP ethertype).
    fn try_run(&mut self, program: &str, frame: &[u8]) -> Option<Vec<RawEvent>> {
        let prog: &SchedClassifier = self.ebpf.program(program).unwrap().try_into().unwrap();
        let res = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..TestRunOptions::default()
            })
            .ok()?;
        assert_eq!(res.return_value, NEXT, "the packet's fate is never changed");
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            assert_eq!(item.len(), size_of::<RawEvent>());
            // SAFETY: length checked; RawEvent is Pod.
            out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<RawEvent>()) });
        }
        Some(out)
    }
}

fn v4_addr(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&a);
    out
}

#[test]
fn tc_programs_report_exactly_syn_synack_and_rst_to_watched_ports() {
    let mut h = Harness::new();
    let syn = v4(C4, S4, 6, 0, &tcp(40000, WATCHED, 1000, SYN));
    let ev = h.run(TC_INGRESS, &syn);
    assert_eq!(ev.len(), 1);
    let e = ev[0];
    assert_eq!((e.kind, e.family, e.seq), (kind::SYN, FAMILY_V4, 1000));
    assert_eq!((e.client_addr, e.server_addr), (v4_addr(C4), v4_addr(S4)));
    assert_eq!((e.client_port, e.server_port), (40000, WATCHED));
    assert!(e.ts > 0);

    let rst = v4(C4, S4, 6, 0, &tcp(40000, WATCHED, 1001, RST | ACK));
    let ev = h.run(TC_INGRESS, &rst);
    assert_eq!(
        ev.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [kind::RST_IN]
    );

    // SYN-ACK: reported at egress from the watched port, ends swapped back
    // to the server's view; ignored at ingress.
    let synack = v4(S4, C4, 6, 0, &tcp(WATCHED, 40000, 5000, SYN | ACK));
    let ev = h.run(TC_EGRESS, &synack);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].kind, ev[0].client_port, ev[0].server_port),
        (kind::SYN_ACK, 40000, WATCHED)
    );
    assert_eq!(
        (ev[0].client_addr, ev[0].server_addr),
        (v4_addr(C4), v4_addr(S4))
    );
    assert!(h.run(TC_INGRESS, &synack).is_empty());

    // Nothing for: other ports, plain ACKs and data, a SYN at egress,
    // UDP, non-first fragments, ARP.
    for frame in [
        v4(C4, S4, 6, 0, &tcp(40000, 80, 1, SYN)),
        v4(C4, S4, 6, 0, &tcp(40000, WATCHED, 1, ACK)),
        v4(C4, S4, 6, 0, &tcp(40000, WATCHED, 1, ACK | PSH)),
        v4(C4, S4, 17, 0, &tcp(40000, WATCHED, 1, SYN)),
        v4(C4, S4, 6, 100, &tcp(40000, WATCHED, 1, SYN)),
        eth(0x0806, &[0u8; 28]),
    ] {
        assert!(h.run(TC_INGRESS, &frame).is_empty(), "{frame:02x?}");
    }
    assert!(h.run(TC_EGRESS, &syn).is_empty());
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
        let ev = h.run(TC_INGRESS, &frame);
        assert_eq!(ev.len(), 1, "{frame:02x?}");
        let e = ev[0];
        assert_eq!((e.kind, e.family, e.seq), (kind::SYN, FAMILY_V6, 77));
        assert_eq!((e.client_addr, e.server_addr), (C6, S6));
        assert_eq!((e.client_port, e.server_port), (40001, WATCHED));
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
    }
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
        assert_eq!(h.run(TC_INGRESS, full).len(), 1);
    }
    // An IPv4 header claiming 60 bytes (IHL 15) in a 54-byte frame.
    let mut long_ihl = frames[0].clone();
    long_ihl[14] = 0x4f;
    assert!(h.run(TC_INGRESS, &long_ihl).is_empty());
    // Deterministic garbage, some of it with IP ethertypes.
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
        if i % 2 == 0 {
            frame[12..14].copy_from_slice(if i % 4 == 0 {
                &[0x08, 0]
            } else {
                &[0x86, 0xdd]
            });
        }
        for program in [TC_INGRESS, TC_EGRESS] {
            match h.try_run(program, &frame) {
                Some(events) => assert!(events.is_empty(), "{frame:02x?}"),
                None => assert!(len < 14 + 40 && i % 2 == 0, "refused {frame:02x?}"),
            }
        }
    }
}
