//! `[listener.connection_function]`: the listener's JavaScript
//! connection function and its optional key-value store, both read and
//! validated here (sizes, JSON shape, syntax, `connectionHandler`), so a
//! broken file is refused at load — and at reload, keeping the old one.
//!
//! ```toml
//! [listener.connection_function]
//! file = "revocation.js"   # ≤ 10 KB
//! kvs = "revoked.json"     # optional; {"serial": "value"}, ≤ 5 MB
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::{ConfigError, Ctx};
use crate::function::{Kvs, Program};

/// A connection function whose files were valid when the config was
/// loaded. The program itself is built by [`FunctionConfig::reload`] each
/// time a listener starts or reloads, so the config does not keep a second
/// copy of a store of up to 5 MB alive.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    pub file: PathBuf,
    pub kvs: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnectionFunction {
    file: PathBuf,
    kvs: Option<PathBuf>,
}

/// Files are read up to this many bytes: enough to see they are too large
/// (the limits are checked by `function`), without reading a huge file.
const READ_CAP: u64 = 5 * 1024 * 1024 + 1;

impl RawConnectionFunction {
    /// `key` is the section's dotted path, e.g. `listener[0].connection_function`.
    pub(super) fn validate(self, ctx: &Ctx, key: &str) -> Result<FunctionConfig, ConfigError> {
        let file = ctx.path(&self.file);
        let kvs = self.kvs.map(|p| ctx.path(&p));
        load(&file, kvs.as_deref(), key)?;
        Ok(FunctionConfig { file, kvs })
    }
}

impl FunctionConfig {
    /// Reads and validates both files again (start of the terminator,
    /// SIGHUP), so edits are picked up. On error the caller keeps the
    /// program it has.
    pub fn reload(&self, key: &str) -> Result<Arc<Program>, ConfigError> {
        load(&self.file, self.kvs.as_deref(), key)
    }
}

fn load(file: &Path, kvs: Option<&Path>, key: &str) -> Result<Arc<Program>, ConfigError> {
    let file_key = format!("{key}.file");
    let source = read_capped(file).map_err(|e| ConfigError::file(&file_key, file.into(), e))?;
    let kvs = match kvs {
        Some(path) => {
            let kvs_key = format!("{key}.kvs");
            let bytes =
                read_capped(path).map_err(|e| ConfigError::file(&kvs_key, path.into(), e))?;
            Kvs::from_json(&bytes).map_err(|e| ConfigError::file(&kvs_key, path.into(), e))?
        }
        None => Kvs::default(),
    };
    Program::new(&file.display().to_string(), source, kvs)
        .map_err(|e| ConfigError::file(&file_key, file.into(), e))
}

fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(READ_CAP)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use crate::config::Config;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "connlog-fn-cfg-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, name: &str, text: &str) {
            std::fs::write(self.0.join(name), text).unwrap();
        }

        fn load(&self, function: &str) -> Result<Config, String> {
            self.write(
                "agent.toml",
                &format!(
                    "[[listener]]\ndistribution_id = \"E1\"\n\
                     bind = [\"127.0.0.1:0\"]\ncert = \"s.pem\"\nkey = \"s.key\"\n\
                     [listener.mtls]\nmode = \"passthrough\"\n\
                     [listener.connection_function]\n{function}\n"
                ),
            );
            Config::load(&self.0.join("agent.toml")).map_err(|e| e.to_string())
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const HANDLER: &str = "function connectionHandler(c) { c.allow(); }";

    #[test]
    fn function_and_kvs_load() {
        let dir = TempDir::new();
        dir.write("f.js", HANDLER);
        dir.write("kvs.json", r#"{"01": "x"}"#);
        let cfg = dir.load("file = \"f.js\"\nkvs = \"kvs.json\"").unwrap();
        let function = cfg.listeners[0].connection_function.as_ref().unwrap();
        assert_eq!(function.file, dir.0.join("f.js"));
        assert_eq!(function.kvs.as_deref(), Some(&*dir.0.join("kvs.json")));
        let without_kvs = dir.load("file = \"f.js\"").unwrap();
        let function = without_kvs.listeners[0]
            .connection_function
            .as_ref()
            .unwrap();
        assert_eq!(function.kvs, None);
    }

    #[test]
    fn errors_name_the_key_the_file_and_the_reason() {
        let dir = TempDir::new();
        let toml = dir.0.join("agent.toml").display().to_string();
        let js = dir.0.join("f.js").display().to_string();
        let key = "listener[0].connection_function";

        dir.write("f.js", "function connectionHandler(c) {\n  c.allow(;\n}\n");
        let err = dir.load("file = \"f.js\"").unwrap_err();
        assert!(
            err.starts_with(&format!(
                "{toml}: {key}.file: {js}: syntax error at line 2, column 11: "
            )),
            "{err}"
        );

        dir.write("f.js", &format!("{HANDLER}\n//{}", "x".repeat(10 * 1024)));
        let err = dir.load("file = \"f.js\"").unwrap_err();
        assert_eq!(
            err,
            format!(
                "{toml}: {key}.file: {js}: function source of 10287 bytes is over the 10240-byte limit"
            )
        );

        dir.write("f.js", "function handler(c) { c.allow(); }");
        let err = dir.load("file = \"f.js\"").unwrap_err();
        assert_eq!(
            err,
            format!("{toml}: {key}.file: {js}: no `connectionHandler` function is defined")
        );

        dir.write("f.js", HANDLER);
        dir.write("kvs.json", &format!(r#"{{"a": "{}"}}"#, "v".repeat(1025)));
        let err = dir.load("file = \"f.js\"\nkvs = \"kvs.json\"").unwrap_err();
        let kvs = dir.0.join("kvs.json").display().to_string();
        assert_eq!(
            err,
            format!(
                "{toml}: {key}.kvs: {kvs}: kvs: key \"a\": value of 1025 bytes is over the 1024-byte limit"
            )
        );

        let err = dir.load("file = \"missing.js\"").unwrap_err();
        assert!(
            err.contains("missing.js: No such file or directory"),
            "{err}"
        );
        let err = dir.load("file = \"f.js\"\nkvss = \"x\"").unwrap_err();
        assert!(err.contains("unknown field `kvss`"), "{err}");
    }
}
