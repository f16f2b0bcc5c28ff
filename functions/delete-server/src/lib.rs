//! `DELETE /rexec/terminate` (the published clients: form field `token`) and
//! `DELETE /rexec/server` (Bearer header): removes the caller's rexec-server; its namespace stays
//! for the next spawn. Nothing to remove is still a 2xx, with `"deleted": false`.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use rexec_shared::config::{ConfigError, Vars};
use rexec_shared::http::api::rexec::TerminateAnswer;
use rexec_shared::http::error::ApiError;
use rexec_shared::http::request::{self, json};
use rexec_shared::identity::access::Access;
use rexec_shared::server::audit::{self, Audit, Event};
use rexec_shared::server::spawner::{Servers, Terminated};

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

/// Remove the caller's rexec-server: both routes. Once the caller is known, every answer is an
/// entry of the audit trail.
pub async fn handler(deps: &Deps, req: Request) -> Result<Response<Body>, ApiError> {
    let caller = request::caller(&deps.access, &req).await?;
    let namespace = deps.servers.owner(&caller).namespace;
    let terminated = deps.servers.terminate(&caller).await.map_err(ApiError::from);
    let (outcome, reason) = match &terminated {
        Ok(outcome) => (audit::word(outcome), None),
        Err(err) => (err.outcome().to_owned(), Some(err.code)),
    };
    Audit {
        event: Event::Terminate,
        action: None,
        actor: &caller.sub,
        owner: &caller.sub,
        target: &namespace,
        outcome: &outcome,
        reason,
    }
    .record();
    let outcome = terminated?;
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
            namespace,
        },
    ))
}
