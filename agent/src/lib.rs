//! The connlog agent: the privileged daemon on an edge host.
//!
//! It watches the kernel's TCP handshakes with eBPF ([`probe`]), terminates
//! mutual TLS for each configured listener ([`tls`]), joins both halves into one
//! record per connection attempt and ships the records to a collector.
//! `main.rs` only parses the command line and starts these parts.

mod certinfo;
mod clock;
pub mod config;
mod conn_id;
pub mod export;
pub mod function;
pub mod join;
pub mod metrics;
mod policy;
mod print;
pub mod privileges;
pub mod probe;
mod proxy;
mod status;
pub mod tls;
mod tuple;

pub use clock::MonoNanos;
pub use conn_id::ConnectionId;
pub use print::print_json_line;
pub use probe::{
    LoadedProbe, Missing, Probe, ProbeError, ProbeStats, ProbeStatsSource, TcpEvent,
    TcpFailureDetail,
};
pub use status::{FailureCode, Status};
pub use tls::{ClientCertInfo, TlsOutcome};
pub use tuple::Tuple;
