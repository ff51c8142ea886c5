//! `[export]`: shipping records to a collector. Owned by the pipeline work
//! (issue 4).

use serde::Deserialize;

use super::{ConfigError, Ctx};

#[derive(Debug, Clone, Default)]
pub struct ExportConfig {}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExport {}

impl RawExport {
    pub(super) fn validate(self, _ctx: &Ctx) -> Result<ExportConfig, ConfigError> {
        Ok(ExportConfig {})
    }
}
