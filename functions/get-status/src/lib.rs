//! `GET /api/status/` (and `/api/status`): the API's version and whether it offers rexec.
//! The published `ndp-ep` client reads `api_version` from it when it is constructed.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use rexec_shared::config::{ConfigError, Vars};
use rexec_shared::deployment_api::DeploymentApi;
use rexec_shared::error::ApiError;
use rexec_shared::request::json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub struct Deps {
    pub deployment_api: DeploymentApi,
}

impl Deps {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            deployment_api: DeploymentApi::from_vars(vars)?,
        })
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    pub status: String,
    #[schema(example = "ndp-endpoint-api")]
    pub service: String,
    /// The version of this API.
    #[schema(example = "0.2.0")]
    pub api_version: String,
    /// Whether this endpoint offers remote execution (`GET /status/rexec`).
    pub rexec_enabled: bool,
}

/// The API's version and what it offers. No authentication.
#[utoipa::path(get, path = "/status/", tag = "status", responses((status = 200, description = "The API's status.", body = Status)))]
pub async fn handler(deps: &Deps, _req: Request) -> Result<Response<Body>, ApiError> {
    Ok(json(
        StatusCode::OK,
        &Status {
            status: "ok".into(),
            service: "ndp-endpoint-api".into(),
            api_version: env!("CARGO_PKG_VERSION").into(),
            rexec_enabled: deps.deployment_api.enabled,
        },
    ))
}
