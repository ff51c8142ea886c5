//! Connection functions (SPEC.md section 5): a listener's CloudFront-style
//! JavaScript `connectionHandler(connection)` decides, once the client
//! certificate passed validation, whether the connection may proceed, and
//! may log `connectionLogCustomData`.
//!
//! # Engine: QuickJS (rquickjs), not boa
//!
//! The limits decide. rquickjs exposes QuickJS's per-runtime **memory
//! limit** (`set_memory_limit`: an allocation beyond it fails with "out of
//! memory") and an **interrupt handler** polled by the bytecode
//! interpreter, which lets a CPU-time deadline stop an infinite loop at any
//! point — also inside `await` continuations. It runs ES modules with a
//! custom resolver, so `import cf from 'cloudfront'` works unchanged.
//! boa_engine (0.21/0.22, pure Rust) offers `RuntimeLimits` on loop
//! iterations, recursion depth and VM stack slots only: no heap cap and no
//! time-based interrupt, so neither 2 MB nor 5 ms could be enforced, only
//! approximated by counting iterations; its default features also pull in
//! ICU/temporal crates. boa was compared on its documentation, not built
//! here. rquickjs =0.14.0 (Rust ≥ 1.87, features `std` + `loader`) is one C
//! library built by `cc` (≈ 90 s to build here, once). Measured per call (release, `cargo xtask bench
//! function`): the KVS revocation function runs in ≈ 7 µs of CPU at p50.
//!
//! # Shape
//!
//! [`Program`] (validated source + [`Kvs`]) → [`ConnectionFunction`] (a
//! listener's handle; reload swaps its program) → first `inline` (the
//! call runs on the async thread that finished the handshake, stopped
//! after 250 µs of CPU) and, for what does not fit there, the
//! [`FunctionPool`] (bounded queue, worker threads, full 5 ms limit).
//! Every thread keeps one compiled engine per live program in its `cache`.
//! A function can neither block the accept loop (inline it gets 250 µs,
//! and a function that keeps overrunning goes to the pool for good) nor
//! crash the process (limits, a fresh runtime after any limit, panics
//! caught per call). docs/connection-functions.md says why.

mod cache;
mod clock;
mod cloudfront;
mod counters;
mod engine;
mod gate;
mod info;
mod inline;
mod kvs;
mod limits;
mod pool;
mod program;

use std::time::Duration;

use crate::{FailureCode, Status};

pub use counters::PoolCounters;
pub use gate::{for_listener, running_pool, shared_pool};
pub use info::{CertInfo, ConnectionInfo};
pub use kvs::Kvs;
pub use pool::{ConnectionFunction, FunctionPool};
pub use program::Program;

/// What the function decided about one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `allow()` was called (and `deny()` was not).
    Allow,
    /// `deny()` was called, or neither.
    Deny,
    /// The function threw or broke a limit; the reason is one line.
    Error(String),
    /// connlog could not run the function (pool full, worker gone).
    Internal(String),
}

/// The result of running a connection's function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionResult {
    pub verdict: Verdict,
    /// From `logCustomData()`, already cut to 800 bytes; kept on deny and
    /// on error too.
    pub custom_data: Option<String>,
    /// CPU time of the call on the thread that ran it (handler, its
    /// `await`s, the verdict), excluding a compile.
    pub exec_time: Duration,
}

impl FunctionResult {
    /// The record's `connectionStatus` for this result.
    pub fn status(&self) -> Status {
        match self.verdict {
            Verdict::Allow => Status::Success,
            Verdict::Deny => Status::Failed(FailureCode::ConnectionFunctionDenied),
            Verdict::Error(_) => Status::Failed(FailureCode::ConnectionFunctionError),
            Verdict::Internal(_) => Status::Failed(FailureCode::Internal),
        }
    }

    /// The reason for an error or internal failure, for the record's detail.
    pub fn detail(&self) -> Option<&str> {
        match &self.verdict {
            Verdict::Error(reason) | Verdict::Internal(reason) => Some(reason),
            Verdict::Allow | Verdict::Deny => None,
        }
    }
}

/// Why a function or its key-value store cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FunctionError {
    #[error("function source of {size} bytes is over the {limit}-byte limit")]
    SourceTooLarge { size: usize, limit: usize },
    #[error("function source is not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("syntax error at line {line}, column {column}: {message}")]
    Syntax {
        line: u32,
        column: u32,
        message: String,
    },
    #[error("compile error: {0}")]
    Compile(String),
    #[error("no `connectionHandler` function is defined")]
    MissingHandler,
    #[error("evaluating the top level: {0}")]
    TopLevel(String),
    #[error("starting the JavaScript engine: {0}")]
    Engine(String),
    #[error("kvs file of {size} bytes is over the {limit}-byte limit")]
    KvsTooLarge { size: usize, limit: usize },
    #[error("kvs: {0}")]
    KvsJson(String),
    #[error("kvs: key {key:?}: key of {size} bytes is over the {limit}-byte limit")]
    KvsKeyTooLarge {
        key: String,
        size: usize,
        limit: usize,
    },
    #[error("kvs: key {key:?}: value of {size} bytes is over the {limit}-byte limit")]
    KvsValueTooLarge {
        key: String,
        size: usize,
        limit: usize,
    },
}
