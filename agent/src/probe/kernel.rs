//! What this kernel looks like to the programs: offsets, enum values and
//! tracepoint argument positions from BTF, and the agent's network namespace.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use connlog_common::Globals;

use super::ProbeError;
use super::btf::{ArgType, Btf};

/// The facts the programs need (as their globals) and the userspace decoder
/// needs (reset reason names).
pub(crate) struct KernelFacts {
    pub(crate) globals: Globals,
    /// `enum sk_rst_reason` value → name without `SK_RST_REASON_`.
    pub(crate) rst_reasons: HashMap<u32, String>,
}

pub(crate) fn facts(btf: &Btf) -> Result<KernelFacts, ProbeError> {
    let sock = |ty: &str| ArgType::Ptr(Some(ty.to_string()));
    expect_args(
        btf,
        "inet_sock_set_state",
        &[sock("sock"), ArgType::Int, ArgType::Int],
    )?;
    expect_args(btf, "tcp_receive_reset", &[sock("sock")])?;
    expect_args(
        btf,
        "tcp_send_reset",
        &[
            sock("sock"),
            sock("sk_buff"),
            ArgType::Enum("sk_rst_reason".into()),
        ],
    )?;
    let kfree = btf.tracepoint_args("kfree_skb")?;
    let position = |want: &ArgType| {
        kfree
            .iter()
            .position(|a| a == want)
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| ProbeError::Tracepoint {
                name: "kfree_skb",
                reason: format!("no {want:?} argument (needs Linux ≥ 6.12)"),
            })
    };
    let kfree_skb_reason_arg = position(&ArgType::Enum("skb_drop_reason".into()))?;
    let kfree_skb_rx_sk_arg = position(&sock("sock"))?;
    if kfree.first() != Some(&sock("sk_buff")) {
        return Err(ProbeError::Tracepoint {
            name: "kfree_skb",
            reason: "first argument is not a struct sk_buff *".into(),
        });
    }
    let drop_reason = |name: &str| -> Result<u32, ProbeError> {
        let v = btf.enum_value("skb_drop_reason", name)?;
        u32::try_from(v).map_err(|_| ProbeError::Tracepoint {
            name: "kfree_skb",
            reason: format!("{name} does not fit in u32"),
        })
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
        reason_listen_overflow: drop_reason("SKB_DROP_REASON_TCP_LISTEN_OVERFLOW")?,
        reason_not_specified: drop_reason("SKB_DROP_REASON_NOT_SPECIFIED")?,
        reason_tcp_reset: drop_reason("SKB_DROP_REASON_TCP_RESET")?,
        kfree_skb_reason_arg,
        kfree_skb_rx_sk_arg,
        wakeup_bytes: 0,
        syn_timeout_ns: 0,
    };
    let rst_reasons = btf
        .enum_values("sk_rst_reason")?
        .into_iter()
        .filter_map(|(v, name)| {
            let v = u32::try_from(v).ok()?;
            Some((v, name.trim_start_matches("SK_RST_REASON_").to_owned()))
        })
        .collect();
    Ok(KernelFacts {
        globals,
        rst_reasons,
    })
}

fn expect_args(btf: &Btf, name: &'static str, want: &[ArgType]) -> Result<(), ProbeError> {
    let got = btf.tracepoint_args(name)?;
    if got != want {
        return Err(ProbeError::Tracepoint {
            name,
            reason: format!("unexpected arguments {got:?}"),
        });
    }
    Ok(())
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
        assert_eq!((g.kfree_skb_reason_arg, g.kfree_skb_rx_sk_arg), (2, 3));
        assert!(g.reason_listen_overflow > 2);
        assert_eq!(g.reason_not_specified, 2);
        assert!(g.reason_tcp_reset > 2 && g.reason_tcp_reset != g.reason_listen_overflow);
        assert!(g.skc_v6_daddr >= 16 && g.skc_v6_rcv_saddr >= 16);
        assert_eq!(
            f.rst_reasons.get(&0).map(String::as_str),
            Some("NOT_SPECIFIED")
        );
    }
}
