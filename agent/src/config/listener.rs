//! `[[listener]]`: one mTLS listener ("distribution"). Owned by the TLS
//! terminator work (issue 3); `[listener.connection_function]` by issue 5.

use serde::Deserialize;

use super::function::{FunctionConfig, RawConnectionFunction};
use super::{ConfigError, Ctx};

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub distribution_id: String,
    pub connection_function: Option<FunctionConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    distribution_id: String,
    connection_function: Option<RawConnectionFunction>,
}

impl RawListener {
    pub(super) fn validate(self, ctx: &Ctx, index: usize) -> Result<ListenerConfig, ConfigError> {
        if self.distribution_id.is_empty() {
            return Err(ConfigError::invalid(
                format!("listener[{index}].distribution_id"),
                "must not be empty",
            ));
        }
        let function_key = format!("listener[{index}].connection_function");
        Ok(ListenerConfig {
            distribution_id: self.distribution_id,
            connection_function: (self.connection_function)
                .map(|f| f.validate(ctx, &function_key))
                .transpose()?,
        })
    }
}
