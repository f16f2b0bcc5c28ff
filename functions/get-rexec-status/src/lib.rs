//! `GET /api/status/rexec`: where the Rexec Deployment API lives. Authenticated; the group
//! policy applies. The published clients append `/spawn`, `/broker-config` and `/terminate`.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use rexec_shared::config::{ConfigError, Vars};
use rexec_shared::http::api::ndp::RexecStatus;
use rexec_shared::http::deployment_api::DeploymentApi;
use rexec_shared::http::error::ApiError;
use rexec_shared::http::request::{self, json};
use rexec_shared::identity::access::Access;

pub struct Deps {
    pub access: Access,
    pub deployment_api: DeploymentApi,
}

impl Deps {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            access: Access::from_vars(vars)?,
            deployment_api: DeploymentApi::from_vars(vars)?,
        })
    }
}

/// Where the Rexec Deployment API lives.
pub async fn handler(deps: &Deps, req: Request) -> Result<Response<Body>, ApiError> {
    if !deps.deployment_api.enabled {
        return Err(ApiError::not_found(
            "This endpoint offers no remote execution (REXEC_ENABLED is false).",
        ));
    }
    request::caller(&deps.access, &req).await?;
    let deployment_api_url = deps.deployment_api.url_for(&req)?;
    Ok(json(StatusCode::OK, &RexecStatus { deployment_api_url }))
}
