//! Giving up root: once the probe is attached and every listener is bound,
//! the agent drops every capability (it needs none afterwards on kernels
//! from 6.6, see [`drop_all`]; older ones need one or two, [`Keep`] and
//! `docs/privileges.md`), empties the bounding and ambient sets and sets
//! `no_new_privs`, so neither a bug in the TLS or function code nor a
//! program it could exec can use root's powers.
//!
//! Capabilities are per thread and inherited by the threads a thread
//! starts. [`drop_all`] therefore refuses to run while a second thread
//! exists: called on the only thread, before the tokio runtime and the
//! function pool start, it covers every thread the agent will ever have.

use rustix::thread::{self as rt, CapabilitySet, CapabilitySets};

/// Why the drop failed. Every variant is one line.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "{0} threads are running; capabilities are per thread, so they must be dropped before any thread starts"
    )]
    Threads(usize),
    #[error("reading /proc/self/task")]
    Tasks(#[source] std::io::Error),
    #[error("{what}")]
    Call {
        what: String,
        #[source]
        source: rustix::io::Errno,
    },
    #[error("capabilities {0:#x} are still held after dropping them")]
    Kept(u64),
}

/// Sets `no_new_privs`, clears the ambient and bounding sets and empties
/// the effective, permitted and inheritable sets, then reads them back.
/// Must run while the calling thread is the only one.
///
/// Nothing is kept: from Linux 6.6 (tcx) everything the agent does after
/// start works without a capability once the probe's programs are loaded and its
/// maps open — reading the ring buffer (mapped at load) and per-CPU maps
/// through their fds, attaching the loaded TC programs to a new interface
/// (a tcx bpf link from a program fd), closing links on shutdown — and the
/// listeners are bound before. `tests/tests/privileges.rs` checks this, on
/// every kernel of the matrix.
pub fn drop_all() -> Result<(), PrivilegeError> {
    drop_all_but(&[])
}

/// A capability the probe still needs after start on some kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Without tcx (before Linux 6.6) the TC programs are netlink filters:
    /// attaching them to an interface that comes up later, and removing
    /// them at exit, are netlink requests that need CAP_NET_ADMIN.
    NetAdmin,
    /// Before Linux 5.19, with `kernel.unprivileged_bpf_disabled` set,
    /// every bpf() command needs CAP_BPF, reading a map through its fd
    /// too (the sweeper's attempt table, the counters).
    Bpf,
}

/// [`drop_all`], keeping `keep` (effective and permitted) and nothing else.
pub fn drop_all_but(keep: &[Keep]) -> Result<(), PrivilegeError> {
    let kept = keep
        .iter()
        .map(|k| match k {
            Keep::NetAdmin => CapabilitySet::NET_ADMIN,
            Keep::Bpf => CapabilitySet::BPF,
        })
        .fold(CapabilitySet::empty(), |all, c| all | c);
    drop_all_except(kept)
}

fn drop_all_except(kept: CapabilitySet) -> Result<(), PrivilegeError> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(PrivilegeError::Threads(threads));
    }
    rt::set_no_new_privs(true).map_err(call("setting no_new_privs"))?;
    rt::clear_ambient_capability_set().map_err(call("clearing the ambient capability set"))?;
    let before = rt::capabilities(None).map_err(call("reading capabilities"))?;
    // The bounding set only limits what an exec could gain, which
    // no_new_privs already prevents; emptying it needs CAP_SETPCAP, which
    // an agent started without root may lack.
    if before.effective.contains(CapabilitySet::SETPCAP) {
        clear_bounding_set()?;
    } else {
        tracing::debug!("no CAP_SETPCAP: the capability bounding set is left as it is");
    }
    let want = CapabilitySets {
        effective: kept,
        permitted: kept,
        inheritable: CapabilitySet::empty(),
    };
    rt::set_capabilities(None, want).map_err(call("setting capabilities"))?;
    let after = rt::capabilities(None).map_err(call("reading capabilities"))?;
    if after != want {
        return Err(PrivilegeError::Kept(
            (after.effective | after.permitted | after.inheritable).bits(),
        ));
    }
    tracing::debug!(kept = ?kept, "dropped every other capability");
    Ok(())
}

fn clear_bounding_set() -> Result<(), PrivilegeError> {
    for cap in 0..64u32 {
        let set = CapabilitySet::from_bits_retain(1 << cap);
        match rt::capability_is_in_bounding_set(set) {
            Ok(true) => rt::remove_capability_from_bounding_set(set).map_err(call(&format!(
                "dropping capability {cap} from the bounding set"
            )))?,
            Ok(false) => {}
            // Past the kernel's last capability.
            Err(rustix::io::Errno::INVAL) => break,
            Err(source) => {
                return Err(PrivilegeError::Call {
                    what: format!("reading capability {cap} of the bounding set"),
                    source,
                });
            }
        }
    }
    Ok(())
}

fn thread_count() -> Result<usize, PrivilegeError> {
    Ok(std::fs::read_dir("/proc/self/task")
        .map_err(PrivilegeError::Tasks)?
        .count())
}

fn call(what: &str) -> impl FnOnce(rustix::io::Errno) -> PrivilegeError {
    let what = what.to_owned();
    move |source| PrivilegeError::Call { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_thread_is_refused() {
        // The test harness runs tests on their own threads: more than one.
        let err = drop_all().unwrap_err();
        assert!(matches!(err, PrivilegeError::Threads(n) if n > 1), "{err}");
        assert!(err.to_string().contains("threads are running"));
    }
}
