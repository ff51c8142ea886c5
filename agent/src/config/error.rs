//! What can be wrong with a configuration, each naming the key and file.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    // The cause is part of the message and deliberately not a `source`:
    // `{:#}` would print it twice.
    #[error("{0}")]
    Toml(toml::de::Error),
    /// A key whose value is wrong: `key` is its dotted path, e.g.
    /// `listener[0].mtls.trust_store`.
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    /// A file named by `key` that cannot be used.
    #[error("{key}: {path}: {reason}")]
    File {
        key: String,
        path: PathBuf,
        reason: String,
    },
    /// `inner` is shown in the message, not chained as a source.
    #[error("{path}: {inner}")]
    InFile {
        path: PathBuf,
        inner: Box<ConfigError>,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn file(key: impl Into<String>, path: PathBuf, reason: impl ToString) -> Self {
        Self::File {
            key: key.into(),
            path,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            err @ (Self::Read { .. } | Self::InFile { .. }) => err,
            inner => Self::InFile {
                path: path.to_path_buf(),
                inner: Box::new(inner),
            },
        }
    }
}
