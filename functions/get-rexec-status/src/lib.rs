//! `GET /api/status/rexec`: where the Rexec Deployment API lives. Authenticated; the group
//! policy applies. The published clients append `/spawn`, `/broker-config` and `/terminate`.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use rexec_shared::access::Access;
use rexec_shared::config::{ConfigError, Vars};
use rexec_shared::deployment_api::DeploymentApi;
use rexec_shared::error::{ApiError, ErrorBody};
use rexec_shared::request::json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RexecStatus {
    /// The Rexec Deployment API's base URL.
    #[schema(example = "https://api.example.org/rexec")]
    pub deployment_api_url: String,
}

/// Where the Rexec Deployment API lives.
#[utoipa::path(
    get,
    path = "/status/rexec",
    tag = "rexec",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The Deployment API's base URL.", body = RexecStatus),
        (status = 401, description = "No token, or a token that was refused.", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "The caller is in no allowed group.", body = ErrorBody),
        (status = 404, description = "This endpoint offers no remote execution.", body = ErrorBody),
        (status = 503, description = "The identity service is unreachable.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn handler(deps: &Deps, req: Request) -> Result<Response<Body>, ApiError> {
    if !deps.deployment_api.enabled {
        return Err(ApiError::not_found(
            "This endpoint offers no remote execution (REXEC_ENABLED is false).",
        ));
    }
    deps.access.caller(&req).await?;
    let deployment_api_url = deps.deployment_api.url_for(&req)?;
    Ok(json(StatusCode::OK, &RexecStatus { deployment_api_url }))
}
