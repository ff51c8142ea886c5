//! The TC programs under `BPF_PROG_TEST_RUN` with crafted frames,
//! asserting exactly what they leave in the kernel's attempt table and the
//! ring. Needs root (loads the real object); nothing is attached, so nothing
//! else sees the programs or their maps.
//!
//! - `parse`: SYN, SYN-ACK, RST, ACK, IPv6 extension headers, VLAN tags,
//!   L3 devices, fragments, truncated and garbage frames;
//! - `table`: the attempt table's rules (retransmissions, new ISNs) and its
//!   bound (LRU evictions counted, timeouts swept).

mod floors;
mod parse;
mod table;

use aya::Ebpf;
use aya::maps::{HashMap as BpfHashMap, MapData, RingBuf};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use connlog_common::{Attempt, AttemptKey, FAMILY_V4, FAMILY_V6, RawEvent, names};

use super::loader::{self, TC_EGRESS, TC_EGRESS_L3, TC_INGRESS, TC_INGRESS_L3};
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

/// `frame` with VLAN tags (TPID, VLAN id) inserted after the MACs,
/// outermost first.
fn vlan(tags: &[(u16, u16)], frame: &[u8]) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    for &(tpid, id) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
    }
    f.extend_from_slice(&frame[12..]);
    f
}

/// The IP packet of an Ethernet `frame`: what an L3 device (tun,
/// wireguard) carries.
fn l3(frame: &[u8]) -> Vec<u8> {
    frame[14..].to_vec()
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

fn key4(client_port: u16) -> AttemptKey {
    let mut key = AttemptKey {
        client_port,
        server_port: WATCHED,
        family: FAMILY_V4,
        ..AttemptKey::default()
    };
    key.client_addr[..4].copy_from_slice(&C4);
    key.server_addr[..4].copy_from_slice(&S4);
    key
}

fn key6(client_port: u16) -> AttemptKey {
    AttemptKey {
        client_addr: C6,
        server_addr: S6,
        client_port,
        server_port: WATCHED,
        family: FAMILY_V6,
        _pad: [0; 3],
    }
}

struct Harness {
    ebpf: Ebpf,
    ring: RingBuf<MapData>,
}

impl Harness {
    fn new() -> Self {
        Self::with(&ProbeConfig::default())
    }

    fn with(config: &ProbeConfig) -> Self {
        let (mut ebpf, _) = loader::open(config).expect("load the object (root needed)");
        loader::set_ports(&mut ebpf, &[WATCHED]).unwrap();
        for name in [TC_INGRESS, TC_EGRESS, TC_INGRESS_L3, TC_EGRESS_L3] {
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

    /// Every entry of the attempt table.
    fn attempts(&self) -> Vec<(AttemptKey, Attempt)> {
        let map = self.ebpf.map(names::ATTEMPTS).unwrap();
        let map: BpfHashMap<_, AttemptKey, Attempt> = BpfHashMap::try_from(map).unwrap();
        map.iter().map(Result::unwrap).collect()
    }

    fn attempt(&self, key: &AttemptKey) -> Option<Attempt> {
        self.attempts()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, a)| a)
    }

    /// Empties the attempt table.
    fn clear(&mut self) {
        let map = self.ebpf.map_mut(names::ATTEMPTS).unwrap();
        let mut map: BpfHashMap<_, AttemptKey, Attempt> = BpfHashMap::try_from(map).unwrap();
        let keys: Vec<AttemptKey> = map.keys().map(Result::unwrap).collect();
        for key in keys {
            map.remove(&key).unwrap();
        }
    }
}
