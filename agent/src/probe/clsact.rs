//! The `clsact` qdisc that TC filters hang from on kernels without tcx
//! (before Linux 6.6), where the TC programs attach through netlink.
//!
//! Unlike a tcx link, a netlink filter outlives the process that added it,
//! so the agent cleans up both ways: [`prepare`] removes filters an earlier
//! agent left behind (killed before it could detach) and adds the qdisc if
//! the interface has none; [`remove`] deletes the qdisc again at detach, but
//! only one the agent added, so other tools' filters on a qdisc that was
//! there before are never touched.

use std::os::fd::AsFd;

use aya::programs::TcAttachType;
use aya::programs::tc::{self, TcError};
use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

const RTM_DELQDISC: u16 = 37;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
/// `TC_H_CLSACT` (== `TC_H_INGRESS`): the parent of a clsact qdisc.
const TC_H_CLSACT: u32 = 0xffff_fff1;
/// The handle of a clsact qdisc, `ffff:`.
const CLSACT_HANDLE: u32 = 0xffff_0000;
const TCA_KIND: u16 = 1;

/// Removes this agent's filters left on `iface` by an earlier run (every
/// program named in `programs`, both directions), then adds a clsact qdisc
/// if there is none. Returns whether it added one.
pub(crate) fn prepare(iface: &str, programs: &[&str]) -> Result<bool, TcError> {
    for program in programs {
        for dir in [TcAttachType::Ingress, TcAttachType::Egress] {
            match tc::qdisc_detach_program(iface, dir, program) {
                Ok(()) => {
                    tracing::info!(%iface, program, "probe: removed a filter left by an earlier run")
                }
                // No such filter, or no qdisc at all yet.
                Err(TcError::IoError(_) | TcError::NetlinkError(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    match tc::qdisc_add_clsact(iface) {
        Ok(()) => Ok(true),
        Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes the clsact qdisc of interface `index` (and every filter on it).
pub(crate) fn remove(index: u32) -> std::io::Result<()> {
    let fd = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None, // NETLINK_ROUTE
    )?;
    let request = del_qdisc_request(index);
    rustix::net::sendto(
        fd.as_fd(),
        &request,
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 0),
    )?;
    let mut reply = [0u8; 256];
    let (n, _) = rustix::net::recv(fd.as_fd(), &mut reply, RecvFlags::empty())?;
    ack_status(&reply[..n.min(reply.len())])
}

/// `RTM_DELQDISC` for the clsact qdisc of interface `index`: nlmsghdr,
/// tcmsg, then the `TCA_KIND` attribute "clsact".
fn del_qdisc_request(index: u32) -> Vec<u8> {
    let kind = b"clsact\0";
    let attr_len = 4 + kind.len();
    let len = 16 + 20 + attr_len.next_multiple_of(4);
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_DELQDISC.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    // tcmsg: family, 3 pad bytes, ifindex, handle, parent, info.
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(&index.to_ne_bytes());
    m.extend_from_slice(&CLSACT_HANDLE.to_ne_bytes());
    m.extend_from_slice(&TC_H_CLSACT.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    m.extend_from_slice(&TCA_KIND.to_ne_bytes());
    m.extend_from_slice(kind);
    m.resize(len, 0);
    m
}

/// The kernel's answer to a request with `NLM_F_ACK`: an `NLMSG_ERROR`
/// whose error is 0 on success, `-errno` otherwise.
fn ack_status(reply: &[u8]) -> std::io::Result<()> {
    let field = |at: usize| reply.get(at..at + 4).map(|b| [b[0], b[1], b[2], b[3]]);
    let kind = reply.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    match (kind, field(16).map(i32::from_ne_bytes)) {
        (Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (Some(NLMSG_ERROR), Some(errno)) => Err(std::io::Error::from_raw_os_error(-errno)),
        _ => Err(std::io::Error::other("unexpected rtnetlink reply")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_clsact_qdisc() {
        let m = del_qdisc_request(7);
        assert_eq!(m.len(), 48);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 48);
        assert_eq!(
            u16::from_ne_bytes(m[4..6].try_into().unwrap()),
            RTM_DELQDISC
        );
        assert_eq!(u32::from_ne_bytes(m[20..24].try_into().unwrap()), 7);
        assert_eq!(
            u32::from_ne_bytes(m[24..28].try_into().unwrap()),
            0xffff_0000
        );
        assert_eq!(
            u32::from_ne_bytes(m[28..32].try_into().unwrap()),
            0xffff_fff1
        );
        assert_eq!(u16::from_ne_bytes(m[36..38].try_into().unwrap()), 11);
        assert_eq!(&m[40..47], b"clsact\0");
    }

    #[test]
    fn acks_and_errors_are_told_apart() {
        let mut reply = vec![0u8; 36];
        reply[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert!(ack_status(&reply).is_ok());
        reply[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        let err = ack_status(&reply).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        assert!(ack_status(&[1, 2, 3]).is_err());
    }
}
