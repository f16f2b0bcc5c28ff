//! `GET /api/status/` (and `/api/status`): the API's version and whether it offers rexec.
//! The published `ndp-ep` client reads `api_version` from it when it is constructed.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use rexec_shared::config::{ConfigError, Vars};
use rexec_shared::http::api::ndp::Status;
use rexec_shared::http::deployment_api::DeploymentApi;
use rexec_shared::http::error::ApiError;
use rexec_shared::http::request::json;

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

/// The API's version and what it offers. No authentication.
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
