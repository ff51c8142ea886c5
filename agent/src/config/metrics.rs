//! `[metrics]`: the Prometheus endpoint (off unless `listen` is set).
//!
//! ```toml
//! [metrics]
//! listen = "127.0.0.1:9464"   # GET /metrics, plain HTTP, text format
//! ```

use std::net::SocketAddr;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where to serve `/metrics`; `None`: no endpoint.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    listen: Option<String>,
}

impl RawMetrics {
    pub(super) fn validate(self) -> Result<MetricsConfig, ConfigError> {
        let listen = self
            .listen
            .map(|s| {
                s.parse().map_err(|_| {
                    ConfigError::invalid(
                        "metrics.listen",
                        format!("{s:?}: expected an address and port, e.g. \"127.0.0.1:9464\""),
                    )
                })
            })
            .transpose()?;
        Ok(MetricsConfig { listen })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    #[test]
    fn off_by_default_and_parsed() {
        let off = Config::parse("", Path::new("/")).unwrap();
        assert_eq!(off.metrics.listen, None);
        let on = Config::parse("[metrics]\nlisten = \"127.0.0.1:9464\"\n", Path::new("/")).unwrap();
        assert_eq!(on.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
    }

    #[test]
    fn bad_address_names_the_key() {
        let err = Config::parse("[metrics]\nlisten = \"9464\"\n", Path::new("/")).unwrap_err();
        assert!(err.to_string().starts_with("metrics.listen"), "{err}");
    }
}
