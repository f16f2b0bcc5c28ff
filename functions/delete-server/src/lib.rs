//! `DELETE /rexec/terminate` (the published clients: form field `token`) and
//! `DELETE /rexec/server` (Bearer header): removes the caller's rexec-server; its namespace stays
//! for the next spawn. Nothing to remove is still a 2xx, with `"deleted": false`.
//! `DELETE /rexec/servers/{owner}`: the same for any caller's server, for administrators.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use rexec_shared::http::api::rexec::{TerminateAnswer, Terminated};
use rexec_shared::http::error::ApiError;
use rexec_shared::http::request::{self, json};
use rexec_shared::server::audit::{self, Audit, Event};

/// The function's settings, read once: the caller's access and the callers' servers.
pub use rexec_shared::http::servers_deps::ServersDeps as Deps;

/// Remove the caller's rexec-server (both callers' routes), or on the administrators' route the
/// server of `{owner}`. Once the caller is known and the owner well formed, every answer is an
/// entry of the audit trail, a non-administrator's refusal on the administrators' route
/// included.
pub async fn handler(deps: &Deps, req: Request) -> Result<Response<Body>, ApiError> {
    let caller = request::caller(&deps.access, &req).await?;
    check_body(&req)?;
    let (event, owner) = match request::owner_param(&req)? {
        None => (Event::Terminate, caller.sub.clone()),
        Some(owner) => (Event::AdminDelete, owner),
    };
    let namespace = deps.servers.owner(&owner).namespace;
    let admitted = match event {
        Event::AdminDelete => deps.access.require_admin(&caller),
        _ => Ok(()),
    };
    let terminated = match admitted {
        Ok(()) => deps
            .servers
            .terminate(&owner)
            .await
            .map(Terminated::from)
            .map_err(ApiError::from),
        Err(refused) => Err(ApiError::from(refused)),
    };
    let (outcome, reason) = match &terminated {
        Ok(outcome) => (audit::word(outcome), None),
        Err(err) => (err.outcome().to_owned(), Some(err.code)),
    };
    Audit {
        event,
        action: None,
        actor: &caller.sub,
        owner: &owner,
        target: &namespace,
        outcome: &outcome,
        reason,
    }
    .record();
    let outcome = terminated?;
    let (whose, none) = match event {
        Event::AdminDelete => ("This owner's rexec server", "This owner has no rexec server to remove."),
        _ => ("Your rexec server", "You have no rexec server to remove."),
    };
    let status = match outcome {
        Terminated::Deleted => format!("{whose} is being removed."),
        Terminated::AlreadyTerminating => format!("{whose} is already being removed."),
        Terminated::NothingThere => none.to_owned(),
    };
    Ok(json(
        StatusCode::OK,
        &TerminateAnswer {
            status,
            username: caller.username.clone(),
            deleted: outcome != Terminated::NothingThere,
            outcome,
            owner,
            namespace,
        },
    ))
}

/// A removal's body, when there is one, is the published clients' form: the field `token`
/// only. Judged once the caller is known.
fn check_body(req: &Request) -> Result<(), ApiError> {
    if req.body().is_empty() {
        return Ok(());
    }
    if request::form_fields(req)?.iter().any(|(name, _)| name != "token") {
        return Err(ApiError::bad_request(
            "invalid_field",
            "The form of a removal holds the field `token` only.",
        ));
    }
    Ok(())
}
