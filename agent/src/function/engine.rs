//! One QuickJS runtime running one [`Program`]: compile once, then call
//! `connectionHandler` per connection under the time and memory limits.
//!
//! A runtime is `!Send`: each pool worker owns its engines and never moves
//! them. After a limit is hit the worker drops the engine and builds a fresh
//! one, so no state of an interrupted call survives.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rquickjs::prelude::Coerced;
use rquickjs::{CaughtError, Context, Ctx, Function, Module, Persistent, Runtime, Value};

use super::clock::{nanos, thread_cpu_nanos};
use super::cloudfront;
use super::info::{self, ConnectionInfo, Methods};
use super::limits::{MAX_EXECUTION, MAX_MEMORY_BYTES, MAX_STACK_BYTES, truncate_custom_data};
use super::program::Program;
use super::{FunctionError, Verdict};

/// Module name of the function's source: what stack traces show.
const MODULE_NAME: &str = "connection-function.js";

/// Appended to the source: hands `connectionHandler` (declared at module
/// top level, exported or not) to the engine. `typeof` of an undeclared
/// name is `"undefined"`, not an error, so a missing handler is reported
/// as such. It starts with a newline so a final `//` comment cannot hide it.
const HANDLER_HOOK: &str = "\n;globalThis.__connlog_handler = typeof connectionHandler === \
     \"function\" ? connectionHandler : undefined;\n";

/// Why a call ended in [`Verdict::Error`].
const TIME_LIMIT: &str = "execution time limit (5 ms) exceeded";
const MEMORY_LIMIT: &str = "memory limit (2 MB) exceeded";

/// What the function decided, as recorded by `allow()` / `deny()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    None,
    Allow,
    Deny,
}

/// State shared between the engine and the native functions it installed.
#[derive(Debug)]
struct CallState {
    decision: Cell<Decision>,
    custom_data: RefCell<Option<String>>,
    /// Thread CPU time (ns) after which the interrupt handler stops JS.
    deadline: Cell<Option<u64>>,
    interrupted: Cell<bool>,
    /// The previous CPU clock reading of this call, and the longest
    /// stretch between two readings (see [`SPIKE`]).
    last_read: Cell<u64>,
    longest_stretch: Cell<u64>,
}

impl CallState {
    fn new() -> Self {
        Self {
            decision: Cell::new(Decision::None),
            custom_data: RefCell::new(None),
            deadline: Cell::new(None),
            interrupted: Cell::new(false),
            last_read: Cell::new(0),
            longest_stretch: Cell::new(0),
        }
    }

    fn reset(&self) {
        self.decision.set(Decision::None);
        self.custom_data.replace(None);
        self.deadline.set(None);
        self.interrupted.set(false);
    }

    fn arm(&self, budget: Duration) -> u64 {
        let now = thread_cpu_nanos();
        self.deadline.set(Some(now + nanos(budget)));
        self.last_read.set(now);
        self.longest_stretch.set(0);
        now
    }

    /// Reads the CPU clock and notes the stretch since the last reading.
    fn read_clock(&self) -> u64 {
        let now = thread_cpu_nanos();
        let stretch = now.saturating_sub(self.last_read.get());
        self.longest_stretch
            .set(self.longest_stretch.get().max(stretch));
        self.last_read.set(now);
        now
    }

    fn past_deadline(&self) -> bool {
        if self.interrupted.get() {
            return true;
        }
        if let Some(deadline) = self.deadline.get()
            && self.read_clock() > deadline
        {
            self.interrupted.set(true);
        }
        self.interrupted.get()
    }
}

// Limits as enforced: time is the calling thread's CPU time (the handler
// plus every job it queued), checked by the interrupt handler and once more
// after the call, so native work that cannot be interrupted still counts.
// In this VM that clock jumps: adjacent readings milliseconds apart with
// microseconds of wall time between them (docs/connection-functions.md),
// and a 13 µs call was once charged more than 5 ms. So a time limit
// that rests on one uninterrupted stretch of at least [`SPIKE`] between two
// clock readings is `unconfirmed`, and the caller runs the call again on a
// fresh engine; the bytecode interpreter reads the clock every 10 000
// operations (tens of µs), so a real loop never has such a stretch.
// Memory is QuickJS's allocation total for the runtime, capped at what an
// empty engine uses plus 2 MB. An out-of-memory the function catches
// itself (`try { … } catch {}`) never exceeded the cap and is not reported.

/// An uninterrupted stretch of CPU time at least this long behind a time
/// limit makes the limit unconfirmed (see above).
const SPIKE: Duration = Duration::from_millis(1);

/// What one call produced.
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) verdict: Verdict,
    pub(super) custom_data: Option<String>,
    /// A limit was hit: the engine must not be reused.
    pub(super) poisoned: bool,
    /// The call was stopped at a budget below [`MAX_EXECUTION`]: `verdict`
    /// means nothing, the call must run again with the full budget.
    pub(super) over_budget: bool,
    /// The time limit rests on one stretch of [`SPIKE`] or more: run the
    /// call again on a fresh engine before believing it.
    pub(super) unconfirmed: bool,
    /// CPU time of the call on this thread.
    pub(super) cpu: Duration,
}

pub(super) struct Engine {
    // Declared before `context` and `runtime`: values must be released
    // before the runtime that owns them is freed.
    handler: Persistent<Function<'static>>,
    methods: [Persistent<Function<'static>>; 3],
    context: Context,
    _runtime: Runtime,
    state: Rc<CallState>,
    /// Weak: an engine cache must not keep a replaced program alive.
    program: Weak<Program>,
    program_id: u64,
}

impl Engine {
    /// Builds a runtime, compiles the program and evaluates its top level,
    /// all under the limits.
    pub(super) fn new(program: &Arc<Program>) -> Result<Self, FunctionError> {
        let engine_err = |e: rquickjs::Error| FunctionError::Engine(e.to_string());
        let runtime = Runtime::new().map_err(engine_err)?;
        let context = Context::full(&runtime).map_err(engine_err)?;
        let state = Rc::new(CallState::new());
        let interrupt_state = Rc::clone(&state);
        runtime.set_interrupt_handler(Some(Box::new(move || interrupt_state.past_deadline())));
        runtime.set_max_stack_size(MAX_STACK_BYTES);
        cloudfront::install_loader(&runtime);
        let methods = context.with(|ctx| -> rquickjs::Result<_> {
            cloudfront::install_globals(&ctx, program.kvs())?;
            make_methods(&ctx, &state)
        });
        let methods = methods.map_err(engine_err)?;
        // The function's 2 MB start from here (the runtime cannot be
        // queried while a context is in use).
        let base = usize::try_from(runtime.memory_usage().malloc_size).unwrap_or(0);
        runtime.set_memory_limit(base + MAX_MEMORY_BYTES);
        let handler = context.with(|ctx| -> Result<_, FunctionError> {
            let handler = compile(&ctx, program, &state)?;
            Ok(Persistent::save(&ctx, handler))
        })?;
        Ok(Self {
            handler,
            methods,
            context,
            _runtime: runtime,
            state,
            program: Arc::downgrade(program),
            program_id: program.id(),
        })
    }

    /// The id of the program this engine runs.
    pub(super) fn program_id(&self) -> u64 {
        self.program_id
    }

    /// Whether the program is still in use by anyone but engines.
    pub(super) fn program_alive(&self) -> bool {
        self.program.strong_count() > 0
    }

    /// Calls `connectionHandler(connection)` under the full limits.
    #[cfg(test)]
    pub(super) fn run(&self, conn: &ConnectionInfo) -> Outcome {
        self.run_within(conn, MAX_EXECUTION)
    }

    /// Calls `connectionHandler(connection)` and settles what it returned,
    /// stopping it after `budget` of CPU time (at most [`MAX_EXECUTION`]).
    pub(super) fn run_within(&self, conn: &ConnectionInfo, budget: Duration) -> Outcome {
        let budget = budget.min(MAX_EXECUTION);
        let state = &self.state;
        state.reset();
        let started = state.arm(budget);
        let result = self.context.with(|ctx| self.call(&ctx, conn));
        let cpu = state.read_clock().saturating_sub(started);
        state.deadline.set(None);
        // Native code (a huge regex, JSON.parse) is not interrupted: the
        // time it took still counts.
        let timed_out = state.interrupted.get() || cpu > nanos(budget);
        let unconfirmed = timed_out && state.longest_stretch.get() >= nanos(SPIKE);
        let cpu = Duration::from_nanos(cpu);
        let custom_data = state.custom_data.take();
        if timed_out && budget < MAX_EXECUTION {
            return Outcome {
                verdict: Verdict::Error(TIME_LIMIT.into()),
                custom_data,
                poisoned: true,
                over_budget: true,
                unconfirmed,
                cpu,
            };
        }
        let (verdict, poisoned) = match result {
            _ if timed_out => (Verdict::Error(TIME_LIMIT.into()), true),
            Err(reason) if reason == MEMORY_LIMIT => (Verdict::Error(reason), true),
            Err(reason) => (Verdict::Error(reason), false),
            Ok(()) => match state.decision.get() {
                Decision::Allow => (Verdict::Allow, false),
                Decision::Deny | Decision::None => (Verdict::Deny, false),
            },
        };
        Outcome {
            verdict,
            custom_data,
            poisoned,
            over_budget: false,
            unconfirmed,
            cpu,
        }
    }

    /// Runs the handler and every job it queued; `Err` is the reason for a
    /// [`Verdict::Error`].
    fn call<'js>(&self, ctx: &Ctx<'js>, conn: &ConnectionInfo) -> Result<(), String> {
        let restore = |p: &Persistent<Function<'static>>| p.clone().restore(ctx);
        let setup = || -> rquickjs::Result<_> {
            let methods = Methods {
                allow: restore(&self.methods[0])?,
                deny: restore(&self.methods[1])?,
                log_custom_data: restore(&self.methods[2])?,
            };
            Ok((restore(&self.handler)?, info::to_js(ctx, conn, &methods)?))
        };
        let (handler, conn) = setup().map_err(|e| describe(CaughtError::from_error(ctx, e)))?;
        let returned: Value = handler
            .call((conn,))
            .map_err(|e| describe(CaughtError::from_error(ctx, e)))?;
        drain_jobs(ctx, &self.state);
        if let Some(promise) = returned.as_promise()
            && let Some(Err(e)) = promise.result::<Value>()
        {
            return Err(describe(CaughtError::from_error(ctx, e)));
        }
        Ok(())
    }
}

/// Runs queued jobs (`await` continuations) until none is left or the
/// deadline passed.
/// The deadline is the interrupt handler's business (its countdown runs
/// across jobs), so the loop only reads its flag: no clock read per job.
fn drain_jobs(ctx: &Ctx<'_>, state: &CallState) {
    while !state.interrupted.get() && ctx.execute_pending_job() {}
}

/// Compiles the module, evaluates its top level and returns the handler.
fn compile<'js>(
    ctx: &Ctx<'js>,
    program: &Program,
    state: &CallState,
) -> Result<Function<'js>, FunctionError> {
    let source = format!("{}{HANDLER_HOOK}", program.source());
    let module = Module::declare(ctx.clone(), MODULE_NAME, source)
        .map_err(|e| syntax_error(CaughtError::from_error(ctx, e)))?;
    state.reset();
    state.arm(MAX_EXECUTION);
    let evaluated = module.eval();
    let result = evaluated.and_then(|(_, promise)| {
        drain_jobs(ctx, state);
        promise.result::<()>().unwrap_or(Ok(()))
    });
    let timed_out = state.past_deadline();
    state.reset();
    if timed_out {
        return Err(FunctionError::TopLevel(TIME_LIMIT.into()));
    }
    result.map_err(|e| FunctionError::TopLevel(describe(CaughtError::from_error(ctx, e))))?;
    let globals = ctx.globals();
    let handler: Value = globals
        .get("__connlog_handler")
        .map_err(|e| FunctionError::Engine(e.to_string()))?;
    let _ = globals.remove("__connlog_handler");
    handler.into_function().ok_or(FunctionError::MissingHandler)
}

/// `allow`, `deny`, `logCustomData`, recording into `state`. If both
/// `allow()` and `deny()` are called, `deny()` wins.
fn make_methods(
    ctx: &Ctx<'_>,
    state: &Rc<CallState>,
) -> rquickjs::Result<[Persistent<Function<'static>>; 3]> {
    let s = Rc::clone(state);
    let allow = Function::new(ctx.clone(), move || {
        if s.decision.get() == Decision::None {
            s.decision.set(Decision::Allow);
        }
    })?;
    let s = Rc::clone(state);
    let deny = Function::new(ctx.clone(), move || s.decision.set(Decision::Deny))?;
    let s = Rc::clone(state);
    let log = Function::new(ctx.clone(), move |data: Coerced<String>| {
        s.custom_data.replace(Some(truncate_custom_data(data.0)));
    })?;
    Ok([
        Persistent::save(ctx, allow),
        Persistent::save(ctx, deny),
        Persistent::save(ctx, log),
    ])
}

/// One line for logs and `tcpFailureDetail`-style detail:
/// `uncaught exception: TypeError: x is not a function at connection-function.js:3:9`.
fn describe(err: CaughtError<'_>) -> String {
    let text = match &err {
        CaughtError::Exception(e) => {
            let message = e.message().unwrap_or_default();
            if message == "out of memory" {
                return MEMORY_LIMIT.into();
            }
            let name = e
                .get::<_, Coerced<String>>("name")
                .map(|n| n.0)
                .unwrap_or_else(|_| "Error".into());
            match first_frame(e.stack().as_deref()) {
                Some(at) => format!("uncaught exception: {name}: {message} at {at}"),
                None => format!("uncaught exception: {name}: {message}"),
            }
        }
        CaughtError::Value(v) => {
            let shown = v
                .get::<Coerced<String>>()
                .map(|s| s.0)
                .unwrap_or_else(|_| format!("{:?}", v.type_of()));
            format!("uncaught exception: {shown}")
        }
        CaughtError::Error(rquickjs::Error::Allocation) => MEMORY_LIMIT.into(),
        CaughtError::Error(e) => format!("engine error: {e}"),
    };
    one_line(&text)
}

/// The `file:line:column` of the first stack frame.
fn first_frame(stack: Option<&str>) -> Option<String> {
    let line = stack?.lines().find(|l| l.contains(MODULE_NAME))?;
    let at = line.trim().trim_start_matches("at ");
    let start = at.find(MODULE_NAME)?;
    Some(at[start..].trim_end_matches(')').to_owned())
}

/// A syntax error from compiling: `line`/`column` from the error's stack.
fn syntax_error(err: CaughtError<'_>) -> FunctionError {
    let (message, stack) = match &err {
        CaughtError::Exception(e) => (e.message().unwrap_or_default(), e.stack()),
        other => (other.to_string(), None),
    };
    let position = first_frame(stack.as_deref()).and_then(|at| {
        let mut parts = at.rsplitn(3, ':');
        let column = parts.next()?.parse().ok()?;
        let line = parts.next()?.parse().ok()?;
        Some((line, column))
    });
    match position {
        Some((line, column)) => FunctionError::Syntax {
            line,
            column,
            message: one_line(&message),
        },
        None => FunctionError::Compile(one_line(&message)),
    }
}

/// Collapses whitespace runs (newlines included) and caps the length.
fn one_line(text: &str) -> String {
    let mut out = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > 300 {
        out.truncate(out.floor_char_boundary(300));
        out.push('…');
    }
    out
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
