//! What this kernel looks like to the programs: offsets, enum values and
//! tracepoint argument positions from BTF, which variant of each program it
//! takes, what a missing hook costs, and the agent's network namespace.
//!
//! Every kernel from 5.10 with BTF and the BPF ring buffer is supported.
//! Where one lacks a hook, [`Hooks`] picks the program variant that does
//! without it and [`Missing`] names what that costs (`docs/kernels.md`).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use connlog_common::{Globals, NO_REASON, fallback};

use super::ProbeError;
use super::btf::{ArgType, Btf, BtfError};

/// The facts the programs need (as their globals) and the userspace decoder
/// needs (reset reason names).
pub(crate) struct KernelFacts {
    pub(crate) globals: Globals,
    /// `enum sk_rst_reason` value → name without `SK_RST_REASON_`.
    pub(crate) rst_reasons: HashMap<u32, String>,
    pub(crate) hooks: Hooks,
}

/// `kfree_skb`'s shape on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KfreeSkb {
    /// `(skb, location, reason, rx_sk)`: Linux ≥ 6.12.
    WithListener,
    /// `(skb, location, reason)`: Linux 5.17 – 6.11.
    ReasonOnly,
    /// `(skb, location)`: no reason, not attached.
    NoReason,
}

/// Which variant of each program this kernel takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hooks {
    /// Tracing programs may call `bpf_get_socket_cookie` (Linux ≥ 5.12).
    pub(crate) cookies: bool,
    /// `tcp_send_reset` carries `enum sk_rst_reason` (Linux ≥ 6.10).
    pub(crate) rst_reason: bool,
    pub(crate) kfree_skb: KfreeSkb,
    /// `SKB_DROP_REASON_TCP_LISTEN_OVERFLOW` exists (Linux ≥ 6.13).
    pub(crate) listen_overflow_reason: bool,
    /// tcx links for TC programs (Linux ≥ 6.6); else netlink and clsact.
    pub(crate) tcx: bool,
}

/// A hook this kernel lacks, and what that costs. Logged once at start and
/// exported as a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    SocketCookie,
    RstReason,
    DropReason,
    DropListener,
    ListenOverflowReason,
    Tcx,
}

impl Missing {
    pub const ALL: [Missing; 6] = [
        Missing::SocketCookie,
        Missing::RstReason,
        Missing::DropReason,
        Missing::DropListener,
        Missing::ListenOverflowReason,
        Missing::Tcx,
    ];

    /// The metric's `feature` label.
    pub fn name(self) -> &'static str {
        match self {
            Missing::SocketCookie => "socket_cookie",
            Missing::RstReason => "rst_reason",
            Missing::DropReason => "drop_reason",
            Missing::DropListener => "drop_listener",
            Missing::ListenOverflowReason => "listen_overflow_reason",
            Missing::Tcx => "tcx",
        }
    }

    /// What the agent does without it.
    pub fn cost(self) -> &'static str {
        match self {
            Missing::SocketCookie => {
                "tracing programs cannot read socket cookies on this kernel (Linux < 5.12): \
                 kernel events join TLS outcomes on the 4-tuple alone"
            }
            Missing::RstReason => {
                "tcp_send_reset carries no reason on this kernel: \
                 server resets are reported as `server-rst` without a reason"
            }
            Missing::DropReason => {
                "kfree_skb carries no drop reason on this kernel (Linux < 5.17): a client RST \
                 in SYN_RECV is taken from the RST seen at TC ingress, an accept-queue overflow \
                 from a SYN-ACK sent again after the client's ACK"
            }
            Missing::DropListener => {
                "kfree_skb names no receiving socket on this kernel (Linux < 6.12): \
                 dropped segments are matched to attempts by their 4-tuple alone"
            }
            Missing::ListenOverflowReason => {
                "no TCP_LISTEN_OVERFLOW drop reason on this kernel (Linux < 6.13): \
                 an accept-queue overflow is inferred from a final ACK dropped without a reason"
            }
            Missing::Tcx => {
                "no tcx on this kernel (Linux < 6.6): TC programs attach through netlink \
                 (a clsact qdisc, removed at exit if the agent added it)"
            }
        }
    }
}

impl Hooks {
    /// What this kernel lacks, in [`Missing::ALL`]'s order.
    pub(crate) fn missing(&self) -> Vec<Missing> {
        let drop_reason = self.kfree_skb != KfreeSkb::NoReason;
        Missing::ALL
            .into_iter()
            .filter(|m| match m {
                Missing::SocketCookie => !self.cookies,
                Missing::RstReason => !self.rst_reason,
                Missing::DropReason => !drop_reason,
                Missing::DropListener => drop_reason && self.kfree_skb != KfreeSkb::WithListener,
                Missing::ListenOverflowReason => drop_reason && !self.listen_overflow_reason,
                Missing::Tcx => !self.tcx,
            })
            .collect()
    }

    /// The [`fallback`]s the programs need for what is missing.
    fn fallbacks(&self) -> u32 {
        match self.kfree_skb {
            KfreeSkb::NoReason => fallback::TC_CLIENT_RST | fallback::TC_OVERFLOW,
            _ if !self.listen_overflow_reason => fallback::DROP_OVERFLOW,
            _ => 0,
        }
    }
}

pub(crate) fn facts(btf: &Btf) -> Result<KernelFacts, ProbeError> {
    if btf
        .enum_value("bpf_map_type", "BPF_MAP_TYPE_RINGBUF")
        .is_err()
    {
        return Err(ProbeError::TooOld(
            "it has no BPF ring buffer (BPF_MAP_TYPE_RINGBUF, Linux ≥ 5.8)",
        ));
    }
    let sock = |ty: &str| ArgType::Ptr(Some(ty.to_string()));
    expect_args(
        btf,
        "inet_sock_set_state",
        &[&[sock("sock"), ArgType::Int, ArgType::Int]],
    )?;
    expect_args(btf, "tcp_receive_reset", &[&[sock("sock")]])?;
    let reset_args = [sock("sock"), sock("sk_buff")];
    let rst_reason = expect_args(
        btf,
        "tcp_send_reset",
        &[
            &[
                sock("sock"),
                sock("sk_buff"),
                ArgType::Enum("sk_rst_reason".into()),
            ],
            &reset_args,
        ],
    )? == 0;
    let kfree_skb = match expect_args(
        btf,
        "kfree_skb",
        &[
            &[
                sock("sk_buff"),
                ArgType::Ptr(None),
                ArgType::Enum("skb_drop_reason".into()),
                sock("sock"),
            ],
            &[
                sock("sk_buff"),
                ArgType::Ptr(None),
                ArgType::Enum("skb_drop_reason".into()),
            ],
            &[sock("sk_buff"), ArgType::Ptr(None)],
        ],
    )? {
        0 => KfreeSkb::WithListener,
        1 => KfreeSkb::ReasonOnly,
        _ => KfreeSkb::NoReason,
    };
    // A reason this kernel lacks is NO_REASON, which no drop carries.
    let drop_reason = |name: &str| -> Result<u32, ProbeError> {
        match btf.enum_value("skb_drop_reason", name) {
            Ok(v) => u32::try_from(v).map_err(|_| ProbeError::Tracepoint {
                name: "kfree_skb",
                reason: format!("{name} does not fit in u32"),
            }),
            Err(BtfError::Missing(_)) => Ok(NO_REASON),
            Err(e) => Err(e.into()),
        }
    };
    let reason_listen_overflow = drop_reason("SKB_DROP_REASON_TCP_LISTEN_OVERFLOW")?;
    let hooks = Hooks {
        cookies: btf.has_function("bpf_get_socket_ptr_cookie"),
        rst_reason,
        kfree_skb,
        listen_overflow_reason: reason_listen_overflow != NO_REASON,
        tcx: btf.enum_value("bpf_attach_type", "BPF_TCX_INGRESS").is_ok(),
    };
    let globals = Globals {
        netns_ino: own_netns_inode()?,
        // possible_net_t is `struct { struct net *net; }`: the pointer is at
        // the member's start.
        skc_net: btf.member_offset("sock_common", "skc_net")?,
        net_ns_inum: btf.member_offset("net", "ns")? + btf.member_offset("ns_common", "inum")?,
        skc_v6_daddr: btf.member_offset("sock_common", "skc_v6_daddr")?,
        skc_v6_rcv_saddr: btf.member_offset("sock_common", "skc_v6_rcv_saddr")?,
        skb_head: btf.member_offset("sk_buff", "head")?,
        skb_network_header: btf.member_offset("sk_buff", "network_header")?,
        skb_transport_header: btf.member_offset("sk_buff", "transport_header")?,
        reason_listen_overflow,
        reason_not_specified: drop_reason("SKB_DROP_REASON_NOT_SPECIFIED")?,
        reason_tcp_reset: drop_reason("SKB_DROP_REASON_TCP_RESET")?,
        fallbacks: hooks.fallbacks(),
        _reserved: 0,
        wakeup_bytes: 0,
        syn_timeout_ns: 0,
    };
    let rst_reasons = if rst_reason {
        btf.enum_values("sk_rst_reason")?
            .into_iter()
            .filter_map(|(v, name)| {
                let v = u32::try_from(v).ok()?;
                Some((v, name.trim_start_matches("SK_RST_REASON_").to_owned()))
            })
            .collect()
    } else {
        HashMap::new()
    };
    Ok(KernelFacts {
        globals,
        rst_reasons,
        hooks,
    })
}

/// Which of the `shapes` the tracepoint's arguments have (its index).
fn expect_args(btf: &Btf, name: &'static str, shapes: &[&[ArgType]]) -> Result<usize, ProbeError> {
    let got = btf.tracepoint_args(name)?;
    shapes
        .iter()
        .position(|shape| got == *shape)
        .ok_or_else(|| ProbeError::Tracepoint {
            name,
            reason: format!("unexpected arguments {got:?}"),
        })
}

/// The inode of the calling thread's network namespace (`net->ns.inum`).
pub(crate) fn own_netns_inode() -> Result<u32, ProbeError> {
    let meta = std::fs::metadata("/proc/thread-self/ns/net").map_err(ProbeError::Proc)?;
    u32::try_from(meta.ino())
        .map_err(|_| ProbeError::Proc(std::io::Error::other("netns inode > u32")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_has_every_fact() {
        let btf = Btf::parse(std::fs::read(super::super::checks::VMLINUX_BTF).unwrap()).unwrap();
        let f = facts(&btf).unwrap();
        let g = f.globals;
        assert_eq!(g.netns_ino, own_netns_inode().unwrap());
        assert!(g.reason_listen_overflow > 2 && g.reason_listen_overflow != NO_REASON);
        assert_eq!(g.reason_not_specified, 2);
        assert!(g.reason_tcp_reset > 2 && g.reason_tcp_reset != g.reason_listen_overflow);
        assert!(g.skc_v6_daddr >= 16 && g.skc_v6_rcv_saddr >= 16);
        assert_eq!(g.fallbacks, 0);
        assert_eq!(
            f.rst_reasons.get(&0).map(String::as_str),
            Some("NOT_SPECIFIED")
        );
    }

    fn hooks(cookies: bool, rst_reason: bool, kfree_skb: KfreeSkb, overflow: bool) -> Hooks {
        Hooks {
            cookies,
            rst_reason,
            kfree_skb,
            listen_overflow_reason: overflow,
            tcx: rst_reason,
        }
    }

    #[test]
    fn each_kernel_line_misses_what_it_lacks() {
        use KfreeSkb::*;
        use Missing::*;
        // Debian 11, 12, 13 and Linux 6.18, as their BTF describes them.
        let cases = [
            (
                hooks(false, false, NoReason, false),
                vec![SocketCookie, RstReason, DropReason, Tcx],
                fallback::TC_CLIENT_RST | fallback::TC_OVERFLOW,
            ),
            (
                hooks(true, false, ReasonOnly, false),
                vec![RstReason, DropListener, ListenOverflowReason, Tcx],
                fallback::DROP_OVERFLOW,
            ),
            (
                hooks(true, true, WithListener, false),
                vec![ListenOverflowReason],
                fallback::DROP_OVERFLOW,
            ),
            (hooks(true, true, WithListener, true), vec![], 0),
        ];
        for (h, missing, fallbacks) in cases {
            assert_eq!(h.missing(), missing, "{h:?}");
            assert_eq!(h.fallbacks(), fallbacks, "{h:?}");
        }
    }

    #[test]
    fn this_kernel_misses_nothing() {
        let btf = Btf::parse(std::fs::read(super::super::checks::VMLINUX_BTF).unwrap()).unwrap();
        let h = facts(&btf).unwrap().hooks;
        assert_eq!(h.missing(), vec![]);
        assert_eq!(h.kfree_skb, KfreeSkb::WithListener);
    }
}
