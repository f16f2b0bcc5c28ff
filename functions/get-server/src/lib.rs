//! `GET /rexec/server`: how the caller's rexec-server is doing: phase, readiness, age,
//! requirements, and when something is wrong a reason a person can act on.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use rexec_shared::access::Access;
use rexec_shared::config::{ConfigError, Vars};
use rexec_shared::error::{ApiError, ErrorBody};
use rexec_shared::request::json;
use rexec_shared::spawner::{ServerView, Servers};

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

/// The caller's rexec-server.
#[utoipa::path(
    get,
    path = "/server",
    tag = "server",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's server.", body = ServerView),
        (status = 401, description = "No token, or a token that was refused.", body = ErrorBody),
        (status = 403, description = "The caller is in no allowed group.", body = ErrorBody),
        (status = 404, description = "The caller has no server.", body = ErrorBody),
        (status = 503, description = "The identity service or the cluster is unreachable.", body = ErrorBody),
    )
)]
pub async fn handler(deps: &Deps, req: Request) -> Result<Response<Body>, ApiError> {
    let caller = deps.access.caller(&req).await?;
    match deps.servers.describe(&caller).await? {
        Some(server) => Ok(json(StatusCode::OK, &server)),
        None => Err(ApiError::not_found(
            "You have no rexec server. Create one with POST /spawn.",
        )),
    }
}
