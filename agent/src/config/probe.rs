//! `[probe]`: the kernel TCP probe. Owned by the probe work (issue 2).

use serde::Deserialize;

use super::{ConfigError, Ctx};

#[derive(Debug, Clone, Default)]
pub struct ProbeConfig {}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {}

impl RawProbe {
    pub(super) fn validate(self, _ctx: &Ctx) -> Result<ProbeConfig, ConfigError> {
        Ok(ProbeConfig {})
    }
}
