//! A validated connection function: its source, checked by compiling it
//! once, and its key-value store. Immutable; a reload builds a new one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use super::FunctionError;
use super::clock::thread_cpu_nanos;
use super::engine::Engine;
use super::inline::{Admission, INLINE_BUILD_BUDGET};
use super::kvs::Kvs;
use super::limits::MAX_SOURCE_BYTES;

/// Source and store of one listener's function, as loaded.
#[derive(Debug)]
pub struct Program {
    /// Unique per load: workers cache one compiled engine per id.
    id: u64,
    /// Shown in logs and errors (the file path).
    name: String,
    source: String,
    kvs: Arc<Kvs>,
    /// Whether calls may run on the caller's thread (see `inline`).
    inline: Admission,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Program {
    /// Validates `source` (size, UTF-8, syntax, `connectionHandler`, a
    /// top level that finishes within the limits) and pairs it with `kvs`.
    pub fn new(name: &str, source: Vec<u8>, kvs: Kvs) -> Result<Arc<Self>, FunctionError> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(FunctionError::SourceTooLarge {
                size: source.len(),
                limit: MAX_SOURCE_BYTES,
            });
        }
        let source = String::from_utf8(source).map_err(|e| FunctionError::NotUtf8 {
            offset: e.utf8_error().valid_up_to(),
        })?;
        let program = Arc::new(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: name.to_owned(),
            source,
            kvs: Arc::new(kvs),
            inline: Admission::default(),
        });
        // Compiling and evaluating once proves every worker can; what it
        // cost says whether a thread of the async runtime may do it too.
        // Over the budget, it is measured once more and the lower counts:
        // the CPU clock can jump by milliseconds (see `engine`).
        let build = || -> Result<Duration, FunctionError> {
            let started = thread_cpu_nanos();
            Engine::new(&program)?;
            Ok(Duration::from_nanos(
                thread_cpu_nanos().saturating_sub(started),
            ))
        };
        let mut cost = build()?;
        if cost > INLINE_BUILD_BUDGET {
            cost = cost.min(build()?);
        }
        program.inline.set_build_cost(cost);
        Ok(program)
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    pub(crate) fn kvs(&self) -> &Arc<Kvs> {
        &self.kvs
    }

    pub(super) fn inline(&self) -> &Admission {
        &self.inline
    }
}
