//! What the probe needs from the host, checked up front so a missing piece
//! is one clear line rather than a verifier or netlink error.

use std::ffi::CStr;
use std::path::Path;

use super::ProbeError;

pub(crate) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// CAP_BPF, CAP_PERFMON (or CAP_SYS_ADMIN for both) and CAP_NET_ADMIN in the
/// effective set.
pub(crate) fn capabilities() -> Result<(), ProbeError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(ProbeError::Proc)?;
    missing_capabilities(&status).map_or(Ok(()), |missing| Err(ProbeError::Capabilities(missing)))
}

fn missing_capabilities(status: &str) -> Option<String> {
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| eff & (1 << cap) != 0;
    let missing: Vec<&str> = [
        (CAP_BPF, "CAP_BPF"),
        (CAP_PERFMON, "CAP_PERFMON"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
    ]
    .into_iter()
    .filter(|&(cap, _)| {
        let covered_by_sys_admin = cap != CAP_NET_ADMIN && has(CAP_SYS_ADMIN);
        !has(cap) && !covered_by_sys_admin
    })
    .map(|(_, name)| name)
    .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

pub(crate) fn btf(path: &Path) -> Result<Vec<u8>, ProbeError> {
    std::fs::read(path).map_err(|source| ProbeError::NoBtf {
        path: path.to_path_buf(),
        source,
    })
}

/// The interfaces to attach to: the configured ones (each must exist), or
/// every interface that is up, loopback included. Looked up in the calling
/// thread's network namespace (netlink/ioctl, not /sys, which may belong to
/// another namespace).
pub(crate) fn interfaces(configured: Option<&[String]>) -> Result<Vec<String>, ProbeError> {
    match configured {
        Some(names) => {
            for name in names {
                if ifindex(name) == 0 {
                    return Err(ProbeError::NoInterface(name.clone()));
                }
            }
            Ok(names.to_vec())
        }
        None => {
            let up: Vec<String> = all_interfaces().into_iter().filter(|n| is_up(n)).collect();
            if up.is_empty() {
                return Err(ProbeError::NoInterface("(none is up)".into()));
            }
            Ok(up)
        }
    }
}

pub(crate) fn ifindex(name: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(name) else {
        return 0;
    };
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// Whether an interface with this index exists (in the calling thread's
/// network namespace).
pub(crate) fn index_exists(index: u32) -> bool {
    let mut name: [libc::c_char; libc::IF_NAMESIZE] = [0; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes if_indextoname may write.
    let found = unsafe { libc::if_indextoname(index, name.as_mut_ptr()) };
    !found.is_null()
}

fn all_interfaces() -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: if_nameindex returns a heap array terminated by a zero entry,
    // freed below with if_freenameindex; we read it only in between.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return names;
        }
        let mut p = list;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            names.push(CStr::from_ptr((*p).if_name).to_string_lossy().into_owned());
            p = p.add(1);
        }
        libc::if_freenameindex(list);
    }
    names
}

fn is_up(name: &str) -> bool {
    let Ok(sock) = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    ) else {
        return false;
    };
    let mut req: libc::ifreq = unsafe_zeroed_ifreq();
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: SIOCGIFFLAGS reads ifr_name and writes ifr_ifru.ifru_flags of
    // the ifreq we own; the socket fd is valid.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    // SAFETY: the kernel filled the flags member on success.
    rc == 0 && unsafe { req.ifr_ifru.ifru_flags } & (libc::IFF_UP as libc::c_short) != 0
}

fn unsafe_zeroed_ifreq() -> libc::ifreq {
    // SAFETY: ifreq is a plain C struct/union of integers and arrays; all
    // zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_named() {
        let all = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        assert_eq!(missing_capabilities(all), None);
        let none = "CapEff:\t0000000000000000\n";
        assert_eq!(
            missing_capabilities(none).as_deref(),
            Some("CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN")
        );
        // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, not NET_ADMIN.
        let sys_admin = format!("CapEff:\t{:016x}\n", 1u64 << CAP_SYS_ADMIN);
        assert_eq!(
            missing_capabilities(&sys_admin).as_deref(),
            Some("CAP_NET_ADMIN")
        );
    }

    #[test]
    fn loopback_is_up_and_unknown_names_are_errors() {
        let up = interfaces(None).unwrap();
        assert!(up.iter().any(|n| n == "lo"), "{up:?}");
        let err = interfaces(Some(&["nosuch0".to_string()])).unwrap_err();
        assert_eq!(err.to_string(), "interface nosuch0 does not exist");
    }

    #[test]
    fn missing_btf_is_one_line() {
        let err = btf(Path::new("/nonexistent/vmlinux"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("kernel has no BTF (/nonexistent/vmlinux"),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }
}
