//! The mTLS terminator: accepts connections per listener, decides one
//! SPEC.md status per connection and hands accepted connections to the
//! proxy. Every attempt that reaches `accept()` ends in one [`TlsOutcome`].
//!
//! - `server`: bind, accept loop, reload, drain.
//! - `conn`: one connection from accept to outcome (and proxy).
//! - `classify`: the one mapping of errors onto SPEC.md codes.
//! - `gate`: where the connection function decides.
//! - `state`, `material`, `sni`: what a listener loads from its files.
//! - `provider`: the one crypto provider (aws-lc-rs) and its parameters.

pub(crate) mod classify;
mod conn;
mod counters;
pub mod gate;
mod material;
mod negotiated;
mod outcome;
mod provider;
mod server;
mod sni;
mod state;

pub use counters::TlsCounters;
pub use gate::{ConnectionGate, GateFuture, GateInput, GateVerdict};
pub use outcome::{ClientCertInfo, TlsOutcome, epoch_millis};
pub use provider::install_default as install_crypto_provider;
pub use server::{Bound, Running, StartError, Terminator, bind};
