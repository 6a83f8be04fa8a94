//! `GET /admin/api/config`: the effective configuration, every leaf key
//! with its value (secrets redacted by the binary, which composed it), the
//! layer that set it, and whether it changes without a restart.

use super::{Admin, AdminState};
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

/// One leaf key of the server's configuration.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ConfigKey {
    /// Dotted, as in the TOML file: `files.s3.bucket`.
    pub key: String,
    /// The value in effect; `"***"` for a secret, and a URL's password
    /// as `***`.
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
    /// `default`, `file` (`--config`), `env` (`NATTER_*`), `flag`
    /// (`natter serve --...`), or `given` (a server started in-process
    /// with a whole configuration).
    pub source: String,
    /// Changes without a restart (`log.level`, `tls.cert`, `tls.key`).
    pub live: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConfigReport {
    pub keys: Vec<ConfigKey>,
}

/// The effective configuration, as the server composed it at start-up.
#[utoipa::path(get, path = "/admin/api/config", tag = "config",
    responses((status = 200, body = ConfigReport)))]
pub async fn config(State(s): State<AdminState>, _a: Admin) -> axum::Json<ConfigReport> {
    axum::Json(ConfigReport {
        keys: s.config.to_vec(),
    })
}
