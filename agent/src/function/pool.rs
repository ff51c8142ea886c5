//! The bounded pool of worker threads that runs connection functions off
//! the async runtime, and [`ConnectionFunction`], a listener's handle on it.
//!
//! Jobs go through one bounded queue. When it is full the connection fails
//! as `Internal` at once and `queue_full` counts it: a burst never makes
//! the accept loop wait. Each worker keeps one compiled [`Engine`] per live
//! [`Program`], so a call costs the handler, not a compile.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::Duration;

use tokio::sync::oneshot;

use super::cache::EngineCache;
use super::counters::PoolCounters;
use super::limits::MAX_EXECUTION;
use super::{ConnectionInfo, FunctionResult, Program, Verdict, inline};

/// How long a caller waits for a queued job before failing it as Internal
/// (below the terminator's 1 s backstop around the whole gate, so a stuck
/// queue reads as Internal, not as the function's error). A job whose caller
/// gave up is skipped, not run.
const REPLY_TIMEOUT: Duration = Duration::from_millis(500);

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

    /// Runs the function for one connection: on the calling thread when
    /// it fits the inline budget (see `inline`), else on the pool.
    pub async fn run(&self, conn: ConnectionInfo) -> FunctionResult {
        let program = self.program();
        if let Some(result) = inline::try_run(&program, &conn, &self.pool.counters) {
            return result;
        }
        self.pool.run(program, conn).await
    }

    /// Runs the function for one connection on the pool, never inline.
    pub async fn run_on_pool(&self, conn: ConnectionInfo) -> FunctionResult {
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
    let mut cache = EngineCache::default();
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
        // The full budget: `call` only returns `None` below it.
        let result = cache
            .call(&job.program, &job.conn, MAX_EXECUTION, counters)
            .unwrap_or_else(|| internal("connection function stopped below its limit"));
        cache.account(counters, &job.program, &result);
        // The caller may have gone away meanwhile; nothing to do then.
        let _ = job.reply.send(result);
    }
}

fn internal(reason: &str) -> FunctionResult {
    FunctionResult {
        verdict: Verdict::Internal(reason.into()),
        custom_data: None,
        exec_time: Duration::ZERO,
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
        let denied = function.run_on_pool(conn("01:02")).await;
        assert_eq!(denied.verdict, Verdict::Deny);
        assert_eq!(denied.custom_data.as_deref(), Some("REVOKED:01:02"));
        assert_eq!(
            denied.status(),
            Status::Failed(FailureCode::ConnectionFunctionDenied)
        );
        let allowed = function.run_on_pool(conn("03")).await;
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
        let looped = function.run_on_pool(conn("loop")).await;
        assert_eq!(
            looped.status(),
            Status::Failed(FailureCode::ConnectionFunctionError)
        );
        assert_eq!(
            looped.detail(),
            Some("execution time limit (5 ms) exceeded")
        );
        assert_eq!(
            function.run_on_pool(conn("ok")).await.verdict,
            Verdict::Allow
        );
        assert_eq!(pool.counters().errors.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn fast_calls_run_inline_and_slow_ones_end_on_the_pool() {
        let pool = FunctionPool::start(1, 16).unwrap();
        let source = "function connectionHandler(c) { c.logCustomData('ran'); \
            if (c.clientCertInfo.serialNumber === 'loop') for (;;) {} c.allow(); }";
        let function = ConnectionFunction::new(&pool, program(source));
        let counters = pool.counters();
        let fast = function.run(conn("ok")).await;
        assert_eq!(fast.verdict, Verdict::Allow);
        assert_eq!(fast.custom_data.as_deref(), Some("ran"));
        assert_eq!(counters.inline.load(Ordering::Relaxed), 1);
        // Stopped at the inline budget, run again from scratch on the pool
        // where it meets the 5 ms limit: one error, not two.
        let looped = function.run(conn("loop")).await;
        assert_eq!(
            looped.detail(),
            Some("execution time limit (5 ms) exceeded")
        );
        assert_eq!(looped.custom_data.as_deref(), Some("ran"));
        assert_eq!(counters.inline_overruns.load(Ordering::Relaxed), 1);
        assert_eq!(counters.errors.load(Ordering::Relaxed), 1);
        // After its free overruns the program is not tried inline any more.
        for _ in 0..6 {
            function.run(conn("loop")).await;
        }
        assert_eq!(counters.inline_overruns.load(Ordering::Relaxed), 5);
        assert_eq!(counters.errors.load(Ordering::Relaxed), 7);
        assert_eq!(function.run(conn("ok")).await.verdict, Verdict::Allow);
        assert_eq!(counters.inline.load(Ordering::Relaxed), 1);
        assert_eq!(counters.allowed.load(Ordering::Relaxed), 2);
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
                tokio::spawn(async move { function.run_on_pool(conn("x")).await })
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
