//! What the running kernel gives the probe, by kernel version, as
//! `docs/kernels.md` states it: the tests expect exactly this. (The agent
//! finds the same out from BTF; the tests keep their own table so that a
//! wrong detection fails them.)

use std::cmp::Ordering;

/// `major.minor` of the running kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Kernel {
    pub major: u32,
    pub minor: u32,
}

impl Kernel {
    /// The running kernel, from `uname -r`.
    pub fn current() -> Kernel {
        let release = rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
        Self::parse(&release).unwrap_or_else(|| panic!("unreadable kernel release {release:?}"))
    }

    fn parse(release: &str) -> Option<Kernel> {
        let mut parts = release.split(['.', '-']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Kernel { major, minor })
    }

    fn at_least(&self, major: u32, minor: u32) -> bool {
        self.cmp(&Kernel { major, minor }) != Ordering::Less
    }

    /// Kernel events carry the socket cookie (Linux ≥ 5.12); else 0.
    pub fn socket_cookie(&self) -> bool {
        self.at_least(5, 12)
    }

    /// `server-rst:<reason>` (Linux ≥ 6.10); else `server-rst`.
    pub fn rst_reason(&self) -> bool {
        self.at_least(6, 10)
    }

    /// `kfree_skb` has a drop reason (Linux ≥ 5.17): the probe attaches to
    /// it.
    pub fn drop_reason(&self) -> bool {
        self.at_least(5, 17)
    }

    /// `kfree_skb` names the receiving socket (Linux ≥ 6.12).
    pub fn drop_listener(&self) -> bool {
        self.at_least(6, 12)
    }

    /// `SKB_DROP_REASON_TCP_LISTEN_OVERFLOW` exists (Linux ≥ 6.13).
    pub fn listen_overflow_reason(&self) -> bool {
        self.at_least(6, 13)
    }

    /// TC programs attach as tcx links (Linux ≥ 6.6); else netlink filters.
    pub fn tcx(&self) -> bool {
        self.at_least(6, 6)
    }

    /// Every bpf() command needs CAP_BPF (before Linux 5.19, with
    /// `kernel.unprivileged_bpf_disabled` set): the agent keeps it.
    pub fn map_reads_need_cap_bpf(&self) -> bool {
        let disabled = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
            .is_ok_and(|v| v.trim() != "0");
        disabled && !self.at_least(5, 19)
    }

    /// The cookie a kernel event carries for a socket whose `SO_COOKIE` is
    /// `accepted`.
    pub fn event_cookie(&self, accepted: u64) -> u64 {
        if self.socket_cookie() { accepted } else { 0 }
    }

    /// The `tcpFailureDetail` of a server reset with this kernel `reason`.
    pub fn server_rst(&self, reason: &str) -> String {
        if self.rst_reason() {
            format!("server-rst:{reason}")
        } else {
            "server-rst".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_releases_parse() {
        let k = |major, minor| Some(Kernel { major, minor });
        assert_eq!(Kernel::parse("5.10.0-32-amd64"), k(5, 10));
        assert_eq!(Kernel::parse("6.12.117+deb13-amd64"), k(6, 12));
        assert_eq!(Kernel::parse("6.18.44-fc-v1272"), k(6, 18));
        assert_eq!(Kernel::parse("garbage"), None);
        let old = Kernel::parse("5.10.0-32-amd64").unwrap();
        assert!(!old.socket_cookie() && !old.rst_reason() && !old.tcx());
        assert_eq!(old.server_rst("INVALID_SYN"), "server-rst");
        let new = Kernel::parse("6.12.117+deb13-amd64").unwrap();
        assert!(new.socket_cookie() && new.rst_reason() && new.tcx());
        assert_eq!(new.event_cookie(9), 9);
    }
}
