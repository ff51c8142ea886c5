//! The kernel TCP probe: eBPF programs that watch SYNs, SYN-ACKs, resets,
//! drops and state changes on the agent's ports, and the userspace half that
//! turns their raw events into [`TcpEvent`]s.

mod event;

pub use event::{TcpEvent, TcpFailureDetail};
