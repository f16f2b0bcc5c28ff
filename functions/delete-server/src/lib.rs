//! `DELETE /rexec/terminate` (the published clients: form field `token`) and
//! `DELETE /rexec/server` (Bearer header): removes the caller's rexec-server and its namespace.
//! Nothing to remove is still a 2xx, with `"deleted": false`.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use rexec_shared::access::Access;
use rexec_shared::config::{ConfigError, Vars};
use rexec_shared::error::{ApiError, ErrorBody};
use rexec_shared::request::json;
use rexec_shared::spawner::{Servers, Terminated};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub struct Deps {
    pub access: Access,
    pub servers: Servers,
}

impl Deps {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            access: Access::from_vars(vars)?,
            servers: Servers::from_vars(vars)?,
        })
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TerminateAnswer {
    #[serde(rename = "Status")]
    #[schema(example = "Your rexec server is being removed.")]
    pub status: String,
    #[serde(rename = "Username")]
    pub username: String,
    /// Whether a server was there to remove (or already being removed).
    pub deleted: bool,
    pub outcome: Terminated,
    pub namespace: String,
}

/// The answers of both routes.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum TerminateResponses {
    /// Removed, being removed, or nothing to remove.
    #[response(status = 200)]
    Done(TerminateAnswer),
    /// No token, or a token that was refused.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The caller is in no allowed group.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// The identity service or the cluster is unreachable.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// Remove the caller's rexec-server (the published clients' route).
#[utoipa::path(
    delete,
    path = "/terminate",
    tag = "server",
    security(("bearer" = [])),
    request_body(content((TokenForm = "application/x-www-form-urlencoded")), description = "The token, when no Authorization header is sent."),
    responses(TerminateResponses)
)]
pub async fn terminate(deps: &Deps, req: Request) -> Result<Response<Body>, ApiError> {
    handler(deps, req).await
}

/// Remove the caller's rexec-server.
#[utoipa::path(
    delete,
    path = "/server",
    tag = "server",
    security(("bearer" = [])),
    responses(TerminateResponses)
)]
pub async fn handler(deps: &Deps, req: Request) -> Result<Response<Body>, ApiError> {
    let caller = deps.access.caller(&req).await?;
    let outcome = deps.servers.terminate(&caller).await?;
    tracing::info!(outcome = ?outcome, "terminate");
    let status = match outcome {
        Terminated::Deleted => "Your rexec server is being removed.",
        Terminated::AlreadyTerminating => "Your rexec server is already being removed.",
        Terminated::NothingThere => "You have no rexec server to remove.",
    };
    Ok(json(
        StatusCode::OK,
        &TerminateAnswer {
            status: status.into(),
            username: caller.username.clone(),
            deleted: outcome != Terminated::NothingThere,
            outcome,
            namespace: deps.servers.owner(&caller).namespace,
        },
    ))
}

/// The form of `DELETE /terminate`.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct TokenForm {
    token: String,
}
