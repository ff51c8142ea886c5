//! Interfaces that appear after start: with no `[probe] interfaces` list
//! the probe watches every interface that is up, so an interface that is
//! added or comes up later gets the TC programs attached, and one that goes
//! away is forgotten. Driven by rtnetlink link notifications.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::unix::AsyncFd;

use super::checks;
use super::loader::Loaded;
use super::netlink::{self, LinkChange, LinkSocket};

/// Room for one datagram of link notifications (the kernel sends at most
/// a page-sized or 32 KiB message; larger ones are truncated and skipped).
const DATAGRAM: usize = 64 * 1024;

/// Follows link changes until the task is aborted.
pub(crate) async fn run(socket: LinkSocket, loaded: Arc<Mutex<Loaded>>) {
    // SAFETY: the LinkSocket owns its fd and keeps it open for as long as
    // the AsyncFd owns the LinkSocket; nothing else closes or replaces it.
    let socket = match unsafe { AsyncFd::register(socket) } {
        Ok(fd) => fd,
        Err(err) => {
            tracing::error!(error = %err, "probe: cannot poll link notifications; new interfaces will not be watched");
            return;
        }
    };
    // Changes between the socket's opening and the first attach were
    // queued; catch up with anything missed before that as well.
    resync(&loaded);
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let mut ready = match socket.readable().await {
            Ok(ready) => ready,
            Err(err) => {
                tracing::error!(error = %err, "probe: link notifications failed; new interfaces will not be watched");
                return;
            }
        };
        match ready.try_io(|s| s.get_ref().recv(&mut buf)) {
            Ok(Ok(n)) => {
                let data = buf.get(..n).unwrap_or(&buf);
                for change in netlink::parse(data) {
                    apply(&loaded, change);
                }
            }
            Ok(Err(err)) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                tracing::warn!("probe: link notifications overflowed; rescanning interfaces");
                resync(&loaded);
            }
            Ok(Err(err)) => {
                tracing::error!(error = %err, "probe: reading link notifications; new interfaces will not be watched");
                return;
            }
            Err(_would_block) => {}
        }
    }
}

fn apply(loaded: &Mutex<Loaded>, change: LinkChange) {
    match change {
        LinkChange::New { index, name, up } => {
            if up && !lock(loaded).is_attached(index) {
                attach(loaded, &name);
            }
        }
        LinkChange::Deleted { index } => {
            if let Some(name) = lock(loaded).forget(index) {
                tracing::info!(interface = %name, "probe: interface gone");
            }
        }
    }
}

/// Attaches to every interface that is up and not attached yet, and
/// forgets those that no longer exist.
fn resync(loaded: &Mutex<Loaded>) {
    let up = checks::interfaces(None).unwrap_or_default();
    let mut guard = lock(loaded);
    let stale: Vec<u32> = guard
        .attached_indexes()
        .into_iter()
        .filter(|&index| !checks::index_exists(index))
        .collect();
    for index in stale {
        if let Some(name) = guard.forget(index) {
            tracing::info!(interface = %name, "probe: interface gone");
        }
    }
    drop(guard);
    for name in up {
        attach(loaded, &name);
    }
}

fn attach(loaded: &Mutex<Loaded>, name: &str) {
    let mut guard = lock(loaded);
    let index = checks::ifindex(name);
    if index == 0 || guard.is_attached(index) {
        return;
    }
    match guard.attach(name) {
        Ok(()) => tracing::info!(interface = %name, "probe attached to a new interface"),
        // Typically gone again before we got to it.
        Err(err) => {
            tracing::warn!(interface = %name, error = %err, "probe: attaching to a new interface")
        }
    }
}

fn lock(loaded: &Mutex<Loaded>) -> MutexGuard<'_, Loaded> {
    match loaded.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
