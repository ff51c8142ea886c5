//! Shared helpers for connlog's end-to-end tests: throwaway network
//! namespaces joined by veth, and the paths of the binaries under test.
//!
//! Tests use only 198.18.0.0/15 and fd00::/8 inside their own namespaces
//! (and loopback), and clean up in `Drop`, also when they fail.

mod bins;
mod collector;
mod netns;
mod synth;
mod synth_proc;

pub use bins::bin_path;
pub use collector::{CollectorProcess, finished_files, free_port, json_records, signal};
pub use netns::{Netns, Pair};
pub use synth::synth_record;
pub use synth_proc::SynthProcess;
