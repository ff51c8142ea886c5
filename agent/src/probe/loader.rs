//! Loading the kernel object, filling its globals and maps, attaching every
//! program. Everything attached is owned by [`Loaded`]: dropping it detaches.

use std::collections::BTreeMap;
use std::path::Path;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::links::LinkOrder;
use aya::programs::tc::{NlOptions, SchedClassifierLinkId, TcAttachOptions};
use aya::programs::{BtfTracePoint, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use connlog_common::{Attempt, AttemptKey, names};

use super::btf::Btf;
use super::kernel::{self, Hooks, KernelFacts, KfreeSkb};
use super::{ProbeError, checks, clsact, link};
use crate::config::{BenchPrograms, ProbeConfig};

/// The object built by `build.rs` (aya-build → OUT_DIR/connlog-ebpf).
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/connlog-ebpf"));

/// tp_btf programs and the tracepoints they attach to: the variants this
/// kernel's [`Hooks`] take.
fn tracepoints(hooks: &Hooks) -> Vec<(&'static str, &'static str)> {
    let (set_state, receive_reset) = if hooks.cookies {
        ("connlog_set_state", "connlog_receive_reset")
    } else {
        (
            "connlog_set_state_no_cookie",
            "connlog_receive_reset_no_cookie",
        )
    };
    let send_reset = if hooks.rst_reason {
        "connlog_send_reset"
    } else {
        "connlog_send_reset_no_reason"
    };
    let mut programs = vec![
        (set_state, "inet_sock_set_state"),
        (receive_reset, "tcp_receive_reset"),
        (send_reset, "tcp_send_reset"),
    ];
    match hooks.kfree_skb {
        KfreeSkb::WithListener => programs.push(("connlog_kfree_skb", "kfree_skb")),
        KfreeSkb::ReasonOnly => programs.push(("connlog_kfree_skb_no_rx_sk", "kfree_skb")),
        KfreeSkb::NoReason => {}
    }
    programs
}

/// Empty programs on the same tracepoints (`benchmark = "empty"`, and
/// next to the probe's with `"floors"`).
const EMPTY_TRACEPOINTS: [(&str, &str); 4] = [
    ("connlog_empty_set_state", "inet_sock_set_state"),
    ("connlog_empty_receive_reset", "tcp_receive_reset"),
    ("connlog_empty_send_reset", "tcp_send_reset"),
    ("connlog_empty_kfree_skb", "kfree_skb"),
];
pub(crate) const TC_INGRESS: &str = "connlog_tc_ingress";
pub(crate) const TC_EGRESS: &str = "connlog_tc_egress";
/// For devices without a link-layer header (tun, wireguard): attached in
/// place of the two above on those interfaces.
pub(crate) const TC_INGRESS_L3: &str = "connlog_tc_ingress_l3";
pub(crate) const TC_EGRESS_L3: &str = "connlog_tc_egress_l3";
/// Do nothing: attached only for benchmarks (`[probe] benchmark`).
pub(crate) const TC_EMPTY: &str = "connlog_tc_empty";
pub(crate) const TC_EMPTY_EGRESS: &str = "connlog_tc_empty_egress";
/// One hash-map insert per SYN, and its delete: attached only with
/// `benchmark = "floors"`.
pub(crate) const TC_SYN_UPDATE: &str = "connlog_tc_syn_update";
pub(crate) const TC_SYN_FORGET: &str = "connlog_tc_syn_forget";

/// TC programs and the directions each is attached in, on every interface.
type TcPrograms = Vec<(&'static str, &'static [TcAttachType])>;

pub(crate) struct Loaded {
    pub(crate) ebpf: Ebpf,
    tc: TcPrograms,
    /// tcx links; else netlink filters on a clsact qdisc (`clsact`).
    tcx: bool,
    /// Interfaces with the TC programs attached, by ifindex.
    attached: BTreeMap<u32, Attachment>,
}

struct Attachment {
    name: String,
    links: Vec<(&'static str, SchedClassifierLinkId)>,
    /// The agent added the interface's clsact qdisc, and removes it.
    added_clsact: bool,
}

/// Checks the host, then loads the object with this kernel's facts. The
/// programs are not attached yet.
pub(crate) fn open(config: &ProbeConfig) -> Result<(Ebpf, KernelFacts), ProbeError> {
    checks::capabilities()?;
    let btf = Btf::parse(checks::btf(Path::new(checks::VMLINUX_BTF))?)?;
    let mut facts = kernel::facts(&btf)?;
    facts.globals.wakeup_bytes = config.ring_bytes / 4;
    facts.globals.syn_timeout_ns = u64::try_from(config.syn_timeout.as_nanos()).unwrap_or(u64::MAX);
    let max_pending = u32::try_from(config.max_pending).unwrap_or(u32::MAX);
    let bench_syns = if config.benchmark == BenchPrograms::Floors {
        max_pending
    } else {
        1
    };
    let ebpf = EbpfLoader::new()
        .override_global(names::GLOBALS, &facts.globals, true)
        .map_max_entries(names::EVENTS, config.ring_bytes)
        .map_max_entries(names::ATTEMPTS, max_pending)
        .map_max_entries(names::BENCH_SYNS, bench_syns)
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

/// Loads everything and attaches the tracepoints, then the TC programs to
/// `interfaces`, which [`checks::interfaces`] resolved.
pub(crate) fn load(
    config: &ProbeConfig,
    ports: &[u16],
    interfaces: &[String],
) -> Result<(Loaded, KernelFacts), ProbeError> {
    let (mut ebpf, facts) = open(config)?;
    set_ports(&mut ebpf, ports)?;
    let btf = aya::Btf::from_sys_fs().map_err(|e| ProbeError::Tracepoint {
        name: "btf",
        reason: e.to_string(),
    })?;
    let tracepoints = match config.benchmark {
        BenchPrograms::None => tracepoints(&facts.hooks),
        BenchPrograms::Floors => [tracepoints(&facts.hooks), EMPTY_TRACEPOINTS.to_vec()].concat(),
        BenchPrograms::Empty => EMPTY_TRACEPOINTS.to_vec(),
    };
    for missing in facts.hooks.missing() {
        tracing::warn!(feature = missing.name(), "probe: {}", missing.cost());
    }
    for &(program, tracepoint) in &tracepoints {
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
    let (ingress, egress) = (&[TcAttachType::Ingress][..], &[TcAttachType::Egress][..]);
    let tc: TcPrograms = match config.benchmark {
        BenchPrograms::None => vec![(TC_INGRESS, ingress), (TC_EGRESS, egress)],
        BenchPrograms::Floors => vec![
            (TC_INGRESS, ingress),
            (TC_EGRESS, egress),
            (TC_EMPTY, ingress),
            (TC_EMPTY_EGRESS, egress),
            (TC_SYN_UPDATE, ingress),
            (TC_SYN_FORGET, ingress),
        ],
        BenchPrograms::Empty => vec![(TC_EMPTY, ingress), (TC_EMPTY_EGRESS, egress)],
    };
    // The L3 variants are loaded now too: an L3 interface may appear after
    // the agent dropped the privileges loading needs.
    let variants = [TC_INGRESS_L3, TC_EGRESS_L3];
    for program in tc.iter().map(|&(p, _)| p).chain(variants) {
        let prog = classifier(&mut ebpf, program, "loading")?;
        prog.load().map_err(|source| ProbeError::Program {
            what: format!("loading {program}"),
            source,
        })?;
    }
    let mut loaded = Loaded {
        ebpf,
        tc,
        tcx: facts.hooks.tcx,
        attached: BTreeMap::new(),
    };
    for iface in interfaces {
        loaded.attach(iface)?;
    }
    Ok((loaded, facts))
}

/// The program attached in place of `program` on an interface without a
/// link-layer header.
fn l3_variant(program: &'static str) -> &'static str {
    match program {
        TC_INGRESS => TC_INGRESS_L3,
        TC_EGRESS => TC_EGRESS_L3,
        other => other,
    }
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    program: &str,
    doing: &str,
) -> Result<&'a mut SchedClassifier, ProbeError> {
    program_mut(ebpf, program)?
        .try_into()
        .map_err(|source| ProbeError::Program {
            what: format!("{doing} {program}"),
            source,
        })
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
    /// Attaches every TC program to `iface` (by name, resolved now). An
    /// interface already attached is left as it is; on failure nothing of
    /// this interface stays attached.
    pub(crate) fn attach(&mut self, iface: &str) -> Result<(), ProbeError> {
        let index = checks::ifindex(iface);
        if index == 0 {
            return Err(ProbeError::NoInterface(iface.to_owned()));
        }
        if self.attached.contains_key(&index) {
            return Ok(());
        }
        let mut links = Vec::new();
        let mut failed = None;
        let ethernet = link::has_ethernet_header(iface);
        let added_clsact = !self.tcx && self.prepare_netlink(iface)?;
        let tcx = self.tcx;
        let options = move || match tcx {
            true => TcAttachOptions::TcxOrder(LinkOrder::default()),
            false => TcAttachOptions::Netlink(NlOptions::default()),
        };
        'programs: for &(program, dirs) in &self.tc {
            let program = if ethernet {
                program
            } else {
                l3_variant(program)
            };
            let prog = classifier(&mut self.ebpf, program, "attaching")?;
            for &dir in dirs {
                match prog.attach_with_options(iface, dir, options()) {
                    Ok(link) => links.push((program, link)),
                    Err(source) => {
                        failed = Some(ProbeError::Program {
                            what: format!("attaching {program} to {iface}"),
                            source,
                        });
                        break 'programs;
                    }
                }
            }
        }
        let attachment = Attachment {
            name: iface.to_owned(),
            links,
            added_clsact,
        };
        if let Some(err) = failed {
            self.detach(index, attachment);
            return Err(err);
        }
        self.attached.insert(index, attachment);
        Ok(())
    }

    /// Netlink attach: no filter of ours left from an earlier run, and a
    /// clsact qdisc. Whether the agent added the qdisc.
    fn prepare_netlink(&self, iface: &str) -> Result<bool, ProbeError> {
        let ours: Vec<&str> = self
            .tc
            .iter()
            .map(|&(p, _)| p)
            .chain([TC_INGRESS_L3, TC_EGRESS_L3])
            .collect();
        clsact::prepare(iface, &ours).map_err(|source| ProbeError::Program {
            what: format!("adding a clsact qdisc to {iface}"),
            source: source.into(),
        })
    }

    /// Forgets the interface `index` (gone from the kernel, which already
    /// dropped its TC links): closes our link fds. Returns its name if it
    /// was attached.
    pub(crate) fn forget(&mut self, index: u32) -> Option<String> {
        let attachment = self.attached.remove(&index)?;
        let name = attachment.name.clone();
        self.detach(index, attachment);
        Some(name)
    }

    /// Detaches every program of one interface, and removes the clsact
    /// qdisc if the agent added it.
    fn detach(&mut self, index: u32, attachment: Attachment) {
        let Attachment {
            name: iface,
            links,
            added_clsact,
        } = attachment;
        for (program, link) in links {
            let detached = classifier(&mut self.ebpf, program, "detaching").and_then(|prog| {
                prog.detach(link).map_err(|source| ProbeError::Program {
                    what: format!("detaching {program}"),
                    source,
                })
            });
            if let Err(e) = detached {
                tracing::debug!(%iface, error = %e, "probe: detaching a TC link");
            }
        }
        if added_clsact && let Err(e) = clsact::remove(index) {
            tracing::warn!(%iface, error = %e, "probe: removing the clsact qdisc it added");
        }
    }

    /// Whether the interface `index` has the TC programs attached.
    pub(crate) fn is_attached(&self, index: u32) -> bool {
        self.attached.contains_key(&index)
    }

    pub(crate) fn attached_indexes(&self) -> Vec<u32> {
        self.attached.keys().copied().collect()
    }

    /// Names of the interfaces with the TC programs attached.
    pub(crate) fn interfaces(&self) -> Vec<String> {
        self.attached.values().map(|a| a.name.clone()).collect()
    }

    /// Whether detaching and attaching later (interfaces that come up)
    /// needs CAP_NET_ADMIN: netlink filters do, tcx links do not.
    pub(crate) fn needs_net_admin(&self) -> bool {
        !self.tcx
    }

    pub(crate) fn take_ring(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        take_ring(&mut self.ebpf)
    }

    /// Sum over CPUs of the ring-full counter.
    pub(crate) fn ring_full(&self) -> u64 {
        ring_full(&self.ebpf)
    }
}

/// Detaches everything, also after a start that failed halfway: netlink
/// filters and a clsact qdisc the agent added would outlive it.
impl Drop for Loaded {
    fn drop(&mut self) {
        for (index, attachment) in std::mem::take(&mut self.attached) {
            self.detach(index, attachment);
        }
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
