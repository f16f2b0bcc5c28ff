//! `GET /rexec/server`: how the caller's rexec-server is doing: phase, readiness, age,
//! requirements, and when something is wrong a reason a person can act on.
//! `GET /rexec/servers/{owner}`: the same of any caller's server, for administrators.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use rexec_shared::http::api::rexec::ServerView;
use rexec_shared::http::error::ApiError;
use rexec_shared::http::request::{self, json};

/// The function's settings, read once: the caller's access and the callers' servers.
pub use rexec_shared::http::servers_deps::ServersDeps as Deps;

/// The caller's rexec-server, or on the administrators' route the server of `{owner}`.
pub async fn handler(deps: &Deps, req: Request) -> Result<Response<Body>, ApiError> {
    let caller = request::caller(&deps.access, &req).await?;
    let (owner, missing) = match request::owner_param(&req)? {
        None => (caller.sub, "You have no rexec server. Create one with POST /spawn."),
        Some(owner) => {
            deps.access.require_admin(&caller)?;
            (owner, "This owner has no rexec server.")
        }
    };
    match deps.servers.describe(&owner).await? {
        Some(server) => Ok(json(StatusCode::OK, &ServerView::from(server))),
        None => Err(ApiError::not_found(missing)),
    }
}
