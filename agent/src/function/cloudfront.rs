//! The `cloudfront` module (`import cf from 'cloudfront'`) and the rest of
//! the global environment a function runs in.
//!
//! `cf.kvs()` returns a handle whose `get(key, {format})` and `exists(key)`
//! return promises, as CloudFront's do; the lookups themselves are
//! synchronous reads of the in-memory [`Kvs`], so the promises are already
//! settled and `await` costs one job. `get` of a missing key rejects, like
//! CloudFront's KeyValueStore helper.

use std::sync::Arc;

use rquickjs::function::Rest;
use rquickjs::loader::{BuiltinLoader, BuiltinResolver};
use rquickjs::prelude::Coerced;
use rquickjs::{Ctx, Function, Object, Runtime};

use super::kvs::Kvs;

/// Name under which the module is imported.
const MODULE: &str = "cloudfront";

/// The module's source. It captures the native lookups from the global
/// object and removes them, so function code only reaches them through
/// `cf.kvs()`.
const MODULE_SOURCE: &str = r#"
const nativeGet = globalThis.__connlog_kvs_get;
const nativeExists = globalThis.__connlog_kvs_exists;
delete globalThis.__connlog_kvs_get;
delete globalThis.__connlog_kvs_exists;
const handle = Object.freeze({
  async get(key, options) {
    const value = nativeGet(String(key));
    if (value === undefined) {
      throw new Error(`Key ${key} not found`);
    }
    const format = options && options.format;
    if (format === "json") {
      return JSON.parse(value);
    }
    return value;
  },
  async exists(key) {
    return nativeExists(String(key));
  },
});
export default Object.freeze({ kvs() { return handle; } });
"#;

/// Globals that could block a worker thread or are not part of CloudFront's
/// runtime.
const REMOVE_GLOBALS: &str = "delete globalThis.Atomics; delete globalThis.SharedArrayBuffer; \
     delete globalThis.WebAssembly;";

/// Makes `cloudfront` importable in `runtime`.
pub(super) fn install_loader(runtime: &Runtime) {
    runtime.set_loader(
        BuiltinResolver::default().with_module(MODULE),
        BuiltinLoader::default().with_module(MODULE, MODULE_SOURCE),
    );
}

/// Installs the globals the module and functions use: the native KVS
/// lookups and `console` (to the agent's debug log).
pub(super) fn install_globals(ctx: &Ctx<'_>, kvs: &Arc<Kvs>) -> rquickjs::Result<()> {
    let globals = ctx.globals();
    let store = Arc::clone(kvs);
    globals.set(
        "__connlog_kvs_get",
        Function::new(ctx.clone(), move |key: Coerced<String>| {
            store.get(&key.0).map(str::to_owned)
        })?,
    )?;
    let store = Arc::clone(kvs);
    globals.set(
        "__connlog_kvs_exists",
        Function::new(ctx.clone(), move |key: Coerced<String>| {
            store.contains(&key.0)
        })?,
    )?;
    let console = Object::new(ctx.clone())?;
    for level in ["log", "info", "warn", "error", "debug"] {
        console.set(
            level,
            Function::new(ctx.clone(), |args: Rest<Coerced<String>>| {
                let line = args
                    .0
                    .into_iter()
                    .map(|a| a.0)
                    .collect::<Vec<_>>()
                    .join(" ");
                tracing::debug!(target: "connlog::function::console", line = %line, "console");
            })?,
        )?;
    }
    globals.set("console", console)?;
    ctx.eval::<(), _>(REMOVE_GLOBALS)
}
