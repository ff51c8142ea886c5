//! The bounded pool of worker threads that runs connection functions off
//! the async runtime, and [`ConnectionFunction`], a listener's handle on it.
//!
//! Jobs go through one bounded queue. When it is full the connection fails
//! as `Internal` at once and `queue_full` counts it: a burst never makes
//! the accept loop wait. Each worker keeps one compiled [`Engine`] per live
//! [`Program`], so a call costs the handler, not a compile.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::counters::PoolCounters;
use super::engine::Engine;
use super::{ConnectionInfo, FunctionResult, Program, Verdict};

/// How long a caller waits for a queued job before failing it as Internal
/// (below the terminator's 1 s backstop around the whole gate, so a stuck
/// queue reads as Internal, not as the function's error). A job whose caller
/// gave up is skipped, not run.
const REPLY_TIMEOUT: Duration = Duration::from_millis(500);
/// Function failures are logged at WARN at most this often per worker (the
/// rest at DEBUG; all are counted).
const WARN_EVERY: Duration = Duration::from_secs(1);

struct Job {
    program: Arc<Program>,
    conn: ConnectionInfo,
    reply: oneshot::Sender<FunctionResult>,
}

/// Worker threads plus their queue. Cheap to clone; the threads exit when
/// the last clone is dropped.
#[derive(Debug, Clone)]
pub struct FunctionPool {
    queue: SyncSender<Job>,
    counters: Arc<PoolCounters>,
}

impl FunctionPool {
    /// Starts `workers` threads behind a queue of `queue_bound` jobs.
    pub fn start(workers: usize, queue_bound: usize) -> std::io::Result<Self> {
        let (queue, rx) = mpsc::sync_channel(queue_bound);
        let rx = Arc::new(Mutex::new(rx));
        let counters = Arc::new(PoolCounters::default());
        for i in 0..workers.max(1) {
            let rx = Arc::clone(&rx);
            let counters = Arc::clone(&counters);
            thread::Builder::new()
                .name(format!("connfn-{i}"))
                .spawn(move || worker(&rx, &counters))?;
        }
        Ok(Self { queue, counters })
    }

    pub fn counters(&self) -> &PoolCounters {
        &self.counters
    }

    async fn run(&self, program: Arc<Program>, conn: ConnectionInfo) -> FunctionResult {
        let (reply, result) = oneshot::channel();
        let internal = |reason: &str| FunctionResult {
            verdict: Verdict::Internal(reason.into()),
            custom_data: None,
            exec_time: Duration::ZERO,
        };
        match self.queue.try_send(Job {
            program,
            conn,
            reply,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                return internal("connection function queue full");
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.internal.fetch_add(1, Ordering::Relaxed);
                return internal("connection function workers stopped");
            }
        }
        match tokio::time::timeout(REPLY_TIMEOUT, result).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => {
                self.counters.internal.fetch_add(1, Ordering::Relaxed);
                internal("connection function worker dropped the call")
            }
            Err(_) => {
                self.counters.internal.fetch_add(1, Ordering::Relaxed);
                internal("connection function timed out in the queue")
            }
        }
    }
}

/// A listener's connection function: the pool plus the current program,
/// which a reload swaps. Calls already queued finish with the program they
/// started with.
#[derive(Debug, Clone)]
pub struct ConnectionFunction {
    pool: FunctionPool,
    program: Arc<RwLock<Arc<Program>>>,
}

impl ConnectionFunction {
    pub fn new(pool: &FunctionPool, program: Arc<Program>) -> Self {
        Self {
            pool: pool.clone(),
            program: Arc::new(RwLock::new(program)),
        }
    }

    /// Runs the function for one connection.
    pub async fn run(&self, conn: ConnectionInfo) -> FunctionResult {
        let program = self.program();
        self.pool.run(program, conn).await
    }

    /// Replaces the program (already validated) for later connections.
    pub fn reload(&self, program: Arc<Program>) {
        let mut current = self.program.write().unwrap_or_else(|e| e.into_inner());
        *current = program;
    }

    pub fn program(&self) -> Arc<Program> {
        let current = self.program.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&current)
    }
}

fn worker(rx: &Mutex<Receiver<Job>>, counters: &PoolCounters) {
    let mut engines: Vec<Engine> = Vec::new();
    let mut last_warn: Option<Instant> = None;
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return, // pool dropped
            }
        };
        if job.reply.is_closed() {
            counters.abandoned.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // Drop engines of programs no listener uses any more.
        engines.retain(|e| Arc::strong_count(e.program()) > 1);
        let result = run_job(&mut engines, &job);
        let counter = match &result.verdict {
            Verdict::Allow => &counters.allowed,
            Verdict::Deny => &counters.denied,
            Verdict::Error(_) => &counters.errors,
            Verdict::Internal(_) => &counters.internal,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        counters.record_exec(result.exec_time);
        if let Some(reason) = result.detail() {
            let now = Instant::now();
            if last_warn.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
                last_warn = Some(now);
                tracing::warn!(function = job.program.name(), %reason, "connection function failed");
            } else {
                tracing::debug!(function = job.program.name(), %reason, "connection function failed");
            }
        }
        // The caller may have gone away meanwhile; nothing to do then.
        let _ = job.reply.send(result);
    }
}

/// Runs `job` on its program's engine, compiling one first if this worker
/// has none. `exec_time` covers the call only, not a compile.
fn run_job(engines: &mut Vec<Engine>, job: &Job) -> FunctionResult {
    let internal = |reason: String| FunctionResult {
        verdict: Verdict::Internal(reason),
        custom_data: None,
        exec_time: Duration::ZERO,
    };
    let index = match engines
        .iter()
        .position(|e| e.program().id() == job.program.id())
    {
        Some(i) => i,
        None => match Engine::new(Arc::clone(&job.program)) {
            Ok(engine) => {
                engines.push(engine);
                engines.len() - 1
            }
            Err(e) => return internal(format!("compiling function: {e}")),
        },
    };
    let engine = &engines[index];
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| engine.run(&job.conn)));
    let exec_time = started.elapsed();
    match outcome {
        Ok(outcome) => {
            if outcome.poisoned {
                engines.swap_remove(index);
            }
            FunctionResult {
                verdict: outcome.verdict,
                custom_data: outcome.custom_data,
                exec_time,
            }
        }
        Err(_) => {
            engines.swap_remove(index);
            internal("connection function engine panicked".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::function::{CertInfo, Kvs};
    use crate::{FailureCode, Status};

    fn program(source: &str) -> Arc<Program> {
        let kvs = Kvs::from_json(br#"{"01:02": "revoked"}"#).unwrap();
        Program::new("test.js", source.as_bytes().to_vec(), kvs).unwrap()
    }

    fn conn(serial: &str) -> ConnectionInfo {
        ConnectionInfo {
            connection_id: "id".into(),
            distribution_id: "E1".into(),
            client_ip: "198.18.0.2".parse().unwrap(),
            endpoint: None,
            leaf: Some(CertInfo {
                serial_number: serial.into(),
                ..CertInfo::default()
            }),
            intermediates: Vec::new(),
        }
    }

    const REVOCATION: &str = "import cf from 'cloudfront';\n\
        async function connectionHandler(c) { const s = c.clientCertInfo.serialNumber;\n\
        if (await cf.kvs().exists(s)) { c.logCustomData('REVOKED:' + s); return c.deny(); }\n\
        c.logCustomData('OK:' + s); c.allow(); }";

    #[tokio::test]
    async fn pool_runs_the_function_off_the_runtime() {
        let pool = FunctionPool::start(2, 16).unwrap();
        let function = ConnectionFunction::new(&pool, program(REVOCATION));
        let denied = function.run(conn("01:02")).await;
        assert_eq!(denied.verdict, Verdict::Deny);
        assert_eq!(denied.custom_data.as_deref(), Some("REVOKED:01:02"));
        assert_eq!(
            denied.status(),
            Status::Failed(FailureCode::ConnectionFunctionDenied)
        );
        let allowed = function.run(conn("03")).await;
        assert_eq!(allowed.verdict, Verdict::Allow);
        assert_eq!(allowed.custom_data.as_deref(), Some("OK:03"));
        assert_eq!(allowed.status(), Status::Success);
        assert_eq!(pool.counters().denied.load(Ordering::Relaxed), 1);
        assert_eq!(pool.counters().allowed.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn worker_recovers_after_a_limit() {
        let pool = FunctionPool::start(1, 16).unwrap();
        let source = "function connectionHandler(c) { \
            if (c.clientCertInfo.serialNumber === 'loop') for (;;) {} c.allow(); }";
        let function = ConnectionFunction::new(&pool, program(source));
        let looped = function.run(conn("loop")).await;
        assert_eq!(
            looped.status(),
            Status::Failed(FailureCode::ConnectionFunctionError)
        );
        assert_eq!(
            looped.detail(),
            Some("execution time limit (5 ms) exceeded")
        );
        assert_eq!(function.run(conn("ok")).await.verdict, Verdict::Allow);
        assert_eq!(pool.counters().errors.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn full_queue_fails_as_internal_and_is_counted() {
        let pool = FunctionPool::start(1, 1).unwrap();
        let function = ConnectionFunction::new(
            &pool,
            program("function connectionHandler(c) { for (;;) {} }"),
        );
        // Every call burns 5 ms on the single worker; the queue holds one.
        let calls: Vec<_> = (0..10)
            .map(|_| {
                let function = function.clone();
                tokio::spawn(async move { function.run(conn("x")).await })
            })
            .collect();
        let mut results = Vec::new();
        for call in calls {
            results.push(call.await.unwrap());
        }
        let full = results
            .iter()
            .filter(|r| r.verdict == Verdict::Internal("connection function queue full".into()))
            .count();
        let timed_out = results
            .iter()
            .filter(|r| r.detail() == Some("execution time limit (5 ms) exceeded"))
            .count();
        assert_eq!(full + timed_out, 10, "{results:?}");
        assert!(full >= 7, "{results:?}");
        assert!(
            results
                .iter()
                .filter(|r| r.detail() == Some("connection function queue full"))
                .all(|r| r.status() == Status::Failed(FailureCode::Internal))
        );
        assert_eq!(
            pool.counters().queue_full.load(Ordering::Relaxed),
            full as u64
        );
    }

    #[tokio::test]
    async fn reload_swaps_the_program_for_later_calls() {
        let pool = FunctionPool::start(2, 16).unwrap();
        let v1 = "function connectionHandler(c) { c.logCustomData('v1'); c.allow(); }";
        let v2 = "function connectionHandler(c) { c.logCustomData('v2'); c.deny(); }";
        let function = ConnectionFunction::new(&pool, program(v1));
        assert_eq!(
            function.run(conn("a")).await.custom_data.as_deref(),
            Some("v1")
        );
        function.reload(program(v2));
        let after = function.run(conn("a")).await;
        assert_eq!(after.custom_data.as_deref(), Some("v2"));
        assert_eq!(after.verdict, Verdict::Deny);
    }
}
