//! Loading the kernel object, filling its globals and maps, attaching every
//! program. Everything attached is owned by [`Loaded`]: dropping it detaches.

use std::path::Path;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use connlog_common::{Attempt, AttemptKey, names};

use super::btf::Btf;
use super::kernel::{self, KernelFacts};
use super::{ProbeError, checks};
use crate::config::ProbeConfig;

/// The object built by `build.rs` (aya-build → OUT_DIR/connlog-ebpf).
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/connlog-ebpf"));

/// tp_btf programs and the tracepoints they attach to.
const TRACEPOINTS: [(&str, &str); 4] = [
    ("connlog_set_state", "inet_sock_set_state"),
    ("connlog_receive_reset", "tcp_receive_reset"),
    ("connlog_send_reset", "tcp_send_reset"),
    ("connlog_kfree_skb", "kfree_skb"),
];
pub(crate) const TC_INGRESS: &str = "connlog_tc_ingress";
pub(crate) const TC_EGRESS: &str = "connlog_tc_egress";
/// For devices without a link-layer header (tun, wireguard).
#[cfg(test)]
pub(crate) const TC_INGRESS_L3: &str = "connlog_tc_ingress_l3";
#[cfg(test)]
pub(crate) const TC_EGRESS_L3: &str = "connlog_tc_egress_l3";
/// Does nothing: attached only for benchmarks (`attach_empty_classifier`).
pub(crate) const TC_EMPTY: &str = "connlog_tc_empty";

pub(crate) struct Loaded {
    pub(crate) ebpf: Ebpf,
    pub(crate) interfaces: Vec<String>,
}

/// Checks the host, then loads the object with this kernel's facts. The
/// programs are not attached yet.
pub(crate) fn open(config: &ProbeConfig) -> Result<(Ebpf, KernelFacts), ProbeError> {
    checks::capabilities()?;
    let btf = Btf::parse(checks::btf(Path::new(checks::VMLINUX_BTF))?)?;
    let mut facts = kernel::facts(&btf)?;
    facts.globals.wakeup_bytes = config.ring_bytes / 4;
    let ebpf = EbpfLoader::new()
        .override_global(names::GLOBALS, &facts.globals, true)
        .map_max_entries(names::EVENTS, config.ring_bytes)
        .map_max_entries(
            names::ATTEMPTS,
            u32::try_from(config.max_pending).unwrap_or(u32::MAX),
        )
        .load(OBJECT)
        .map_err(ProbeError::Load)?;
    Ok((ebpf, facts))
}

/// Fills the port set.
pub(crate) fn set_ports(ebpf: &mut Ebpf, ports: &[u16]) -> Result<(), ProbeError> {
    let map = ebpf.map_mut(names::PORTS).ok_or(ProbeError::Map {
        what: "PORTS",
        source: aya::maps::MapError::InvalidName {
            name: names::PORTS.into(),
        },
    })?;
    let mut map: Array<_, u8> = Array::try_from(map).map_err(|source| ProbeError::Map {
        what: "PORTS",
        source,
    })?;
    for &port in ports {
        map.set(u32::from(port), 1, 0)
            .map_err(|source| ProbeError::Map {
                what: "PORTS",
                source,
            })?;
    }
    Ok(())
}

/// The kernel's attempt table and its insert/remove counts, for the sweeper.
#[expect(
    clippy::type_complexity,
    reason = "two map handles, named at the call site"
)]
pub(crate) fn take_attempts(
    ebpf: &mut Ebpf,
) -> Result<
    (
        BpfHashMap<MapData, AttemptKey, Attempt>,
        PerCpuArray<MapData, u64>,
    ),
    ProbeError,
> {
    let take = |ebpf: &mut Ebpf, name: &'static str| {
        ebpf.take_map(name).ok_or(ProbeError::Map {
            what: name,
            source: aya::maps::MapError::InvalidName { name: name.into() },
        })
    };
    let attempts =
        BpfHashMap::try_from(take(ebpf, names::ATTEMPTS)?).map_err(|source| ProbeError::Map {
            what: names::ATTEMPTS,
            source,
        })?;
    let counts = PerCpuArray::try_from(take(ebpf, names::ATTEMPT_COUNTS)?).map_err(|source| {
        ProbeError::Map {
            what: names::ATTEMPT_COUNTS,
            source,
        }
    })?;
    Ok((attempts, counts))
}

pub(crate) fn load(
    config: &ProbeConfig,
    ports: &[u16],
) -> Result<(Loaded, KernelFacts), ProbeError> {
    let interfaces = checks::interfaces(config.interfaces.as_deref())?;
    let (mut ebpf, facts) = open(config)?;
    set_ports(&mut ebpf, ports)?;
    let btf = aya::Btf::from_sys_fs().map_err(|e| ProbeError::Tracepoint {
        name: "btf",
        reason: e.to_string(),
    })?;
    for (program, tracepoint) in TRACEPOINTS {
        let what = || format!("attaching {program} to tp_btf/{tracepoint}");
        let prog: &mut BtfTracePoint =
            program_mut(&mut ebpf, program)?
                .try_into()
                .map_err(|source| ProbeError::Program {
                    what: what(),
                    source,
                })?;
        prog.load(tracepoint, &btf)
            .map_err(|source| ProbeError::Program {
                what: what(),
                source,
            })?;
        prog.attach().map_err(|source| ProbeError::Program {
            what: what(),
            source,
        })?;
    }
    let mut tc = vec![
        (TC_INGRESS, &[TcAttachType::Ingress][..]),
        (TC_EGRESS, &[TcAttachType::Egress][..]),
    ];
    if config.attach_empty_classifier {
        tc.push((TC_EMPTY, &[TcAttachType::Ingress, TcAttachType::Egress][..]));
    }
    for (program, dirs) in tc {
        let what = |doing: &str| format!("{doing} {program}");
        let prog: &mut SchedClassifier =
            program_mut(&mut ebpf, program)?
                .try_into()
                .map_err(|source| ProbeError::Program {
                    what: what("loading"),
                    source,
                })?;
        prog.load().map_err(|source| ProbeError::Program {
            what: what("loading"),
            source,
        })?;
        for iface in &interfaces {
            for &dir in dirs {
                prog.attach(iface, dir)
                    .map_err(|source| ProbeError::Program {
                        what: format!("attaching {program} to {iface}"),
                        source,
                    })?;
            }
        }
    }
    Ok((Loaded { ebpf, interfaces }, facts))
}

pub(crate) fn program_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &str,
) -> Result<&'a mut aya::programs::Program, ProbeError> {
    ebpf.program_mut(name)
        .ok_or_else(|| ProbeError::Tracepoint {
            name: "object",
            reason: format!("program {name} missing from the kernel object"),
        })
}

impl Loaded {
    pub(crate) fn take_ring(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        take_ring(&mut self.ebpf)
    }

    /// Sum over CPUs of the ring-full counter.
    pub(crate) fn ring_full(&self) -> u64 {
        ring_full(&self.ebpf)
    }
}

pub(crate) fn take_ring(ebpf: &mut Ebpf) -> Result<RingBuf<MapData>, ProbeError> {
    let map = ebpf.take_map(names::EVENTS).ok_or(ProbeError::Map {
        what: "EVENTS",
        source: aya::maps::MapError::InvalidName {
            name: names::EVENTS.into(),
        },
    })?;
    RingBuf::try_from(map).map_err(|source| ProbeError::Map {
        what: "EVENTS",
        source,
    })
}

pub(crate) fn ring_full(ebpf: &Ebpf) -> u64 {
    let Some(map) = ebpf.map(names::RING_FULL) else {
        return 0;
    };
    let Ok(array) = PerCpuArray::<_, u64>::try_from(map) else {
        return 0;
    };
    array.get(&0, 0).map_or(0, |per_cpu| per_cpu.iter().sum())
}
