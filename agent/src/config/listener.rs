//! `[[listener]]`: one mTLS listener ("distribution"). Owned by the TLS
//! terminator work (issue 3); `[listener.connection_function]` by issue 5.

use serde::Deserialize;

use super::{ConfigError, Ctx};

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub distribution_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    distribution_id: String,
}

impl RawListener {
    pub(super) fn validate(self, _ctx: &Ctx, index: usize) -> Result<ListenerConfig, ConfigError> {
        if self.distribution_id.is_empty() {
            return Err(ConfigError::invalid(
                format!("listener[{index}].distribution_id"),
                "must not be empty",
            ));
        }
        Ok(ListenerConfig {
            distribution_id: self.distribution_id,
        })
    }
}
