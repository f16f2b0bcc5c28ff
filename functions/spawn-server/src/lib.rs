//! `POST /rexec/spawn`: creates the caller's rexec-server, reuses it when it already runs the
//! same requirements, or replaces it when `force_reinstall` is set, then waits for it: 201 (200
//! when reused) once it is connected to the broker, 202 with its stage when the spawn's wait
//! ended first (`GET /rexec/server` follows it), 422 with the reason when it failed.
//!
//! Two bodies are accepted. The published clients send a form: `requirments` (spelled so)
//! repeated per line, `force_reinstall` (`True`/`False`, any case, or 1/0) and `token`. Others
//! may send JSON `{"requirements": [...], "force_reinstall": false}` with the Bearer header.
//! The body is read once; its fields are judged only after the caller is authenticated.
//! A caller spawns at most `REXEC_SPAWNS_PER_MINUTE` times a minute (429 `too_many_spawns` with
//! `Retry-After` beyond; see [`CallerLimit`]).

use std::time::Instant;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use rexec_shared::config::{ConfigError, Vars, parse_bool};
use rexec_shared::http::api::rexec::{SpawnAnswer, SpawnJson, Spawned};
use rexec_shared::http::caller_limit::CallerLimit;
use rexec_shared::http::error::ApiError;
use rexec_shared::http::request::{self, MAX_FORM_BYTES, has_content_type, json};
use rexec_shared::identity::Identity;
use rexec_shared::identity::access::Access;
use rexec_shared::metrics::{self, Metric};
use rexec_shared::server::audit::{self, Audit, Event};
use rexec_shared::server::requirements::RequirementsPolicy;
use rexec_shared::server::spawn_plan;
use rexec_shared::server::spawner::Spawner;
use rexec_shared::server::status::Stage;

pub struct Deps {
    pub access: Access,
    pub limit: CallerLimit,
    pub policy: RequirementsPolicy,
    pub spawner: Spawner,
}

impl Deps {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            access: Access::from_vars(vars)?,
            limit: CallerLimit::spawns(vars)?,
            policy: RequirementsPolicy::from_vars(vars)?,
            spawner: Spawner::from_vars(vars)?,
        })
    }
}

/// Create, reuse or replace the caller's rexec-server; once the caller is known, every answer
/// is an entry of the audit trail.
pub async fn handler(deps: &Deps, req: Request) -> Result<Response<Body>, ApiError> {
    let arrived = Instant::now();
    let body = SpawnBody::read(&req)?;
    let token = request::bearer_or(&req, body.token())?;
    let caller = deps.access.authenticate(&token).await?;
    let answered = spawn(deps, &caller, body).await;
    let (outcome, reason): (String, Option<&str>) = match &answered {
        Ok((status, answer)) => (
            audit::word(&answer.outcome),
            // Answered before the server was ready: how far it got.
            (*status == StatusCode::ACCEPTED).then(|| answer.server.reason.as_deref().unwrap_or_default()),
        ),
        Err(err) if err.code == "server_failed" => ("failed".into(), Some(&err.detail)),
        Err(err) => (err.outcome().into(), Some(err.code)),
    };
    Audit {
        event: Event::Spawn,
        action: None,
        actor: &caller.sub,
        owner: &caller.sub,
        target: &deps.spawner.servers().owner(&caller.sub).namespace,
        outcome: &outcome,
        reason,
    }
    .record();
    metrics::count_by(Metric::Spawns, "Outcome", &outcome, 1.0);
    match &answered {
        Ok((StatusCode::ACCEPTED, _)) => metrics::count(Metric::SpawnsPending),
        Ok((_, answer)) if answer.outcome != Spawned::Reused => metrics::time(Metric::TimeToReady, arrived.elapsed()),
        _ => {}
    }
    let (status, answer) = answered?;
    Ok(json(status, &answer))
}

/// The spawn of a known caller: the requirements judged, the server made or found, the answer.
async fn spawn(deps: &Deps, caller: &Identity, body: SpawnBody<'_>) -> Result<(StatusCode, SpawnAnswer), ApiError> {
    let (lines, force) = body.fields()?;
    let requirements = deps.policy.check(&lines)?;
    // Counted once the request would reach the cluster: a caller correcting a typo loses nothing.
    deps.limit.take(&caller.sub, Instant::now()).map_err(|wait| {
        ApiError::too_many_requests(
            "too_many_spawns",
            format!(
                "You spawned {} times within a minute; try again in {} s.",
                deps.limit.per_minute(),
                wait.as_secs()
            ),
            wait,
        )
    })?;
    let (outcome, server) = deps.spawner.spawn(caller, &requirements, force).await?;
    let (status, message) = match (server.stage, outcome) {
        (Stage::Failed, _) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "server_failed",
                format!(
                    "Your rexec server failed: {} GET /rexec/server shows it.",
                    server.reason.as_deref().unwrap_or("no reason was given.")
                ),
            ));
        }
        (Stage::Ready, spawn_plan::Spawned::Created) => (StatusCode::CREATED, "Your rexec server is ready.".to_owned()),
        (Stage::Ready, spawn_plan::Spawned::Reused) => (
            StatusCode::OK,
            "Your rexec server already runs these requirements and is ready; it is reused.".to_owned(),
        ),
        (Stage::Ready, spawn_plan::Spawned::Replaced) => (
            StatusCode::CREATED,
            "Your rexec server was replaced with the new requirements and is ready.".to_owned(),
        ),
        (stage, _) => (
            StatusCode::ACCEPTED,
            format!(
                "Your rexec server is on its way ({}). GET /rexec/server follows it.",
                server.reason.as_deref().unwrap_or(match stage {
                    Stage::Terminating => "being removed",
                    _ => "starting",
                })
            ),
        ),
    };
    let answer = SpawnAnswer {
        status: message,
        username: caller.username.clone(),
        membership: deps.access.policy().membership(caller),
        outcome: outcome.into(),
        server: server.into(),
    };
    Ok((status, answer))
}

/// A spawn body read once: a form (with the token as a field, when the clients send it so) or
/// JSON. Its fields are judged only once the caller is known ([`SpawnBody::fields`]), so an
/// anonymous caller learns nothing about how they are read.
enum SpawnBody<'a> {
    Form { fields: Vec<(String, String)> },
    Json { bytes: &'a [u8] },
}

impl<'a> SpawnBody<'a> {
    fn read(req: &'a Request) -> Result<Self, ApiError> {
        if has_content_type(req, "application/json") {
            if req.body().len() > MAX_FORM_BYTES {
                return Err(ApiError::payload_too_large(format!(
                    "The body is larger than {MAX_FORM_BYTES} bytes."
                )));
            }
            return Ok(Self::Json {
                bytes: req.body().as_ref(),
            });
        }
        let fields = request::form_fields(req).map_err(|err| match err.status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::unsupported_media_type(
                "Send a form (application/x-www-form-urlencoded) or JSON (application/json).",
            ),
            _ => err,
        })?;
        Ok(Self::Form { fields })
    }

    /// The form field `token`, for callers without an Authorization header.
    fn token(&self) -> Option<String> {
        match self {
            Self::Form { fields } => request::token_field(fields),
            Self::Json { .. } => None,
        }
    }

    /// The requirement lines and `force_reinstall`.
    fn fields(self) -> Result<(Vec<String>, bool), ApiError> {
        let fields = match self {
            Self::Json { bytes } => {
                let body: SpawnJson = serde_json::from_slice(bytes).map_err(|_| {
                    ApiError::bad_request(
                        "malformed_body",
                        r#"The JSON body is not {"requirements": [...], "force_reinstall": bool}."#,
                    )
                })?;
                return Ok((body.requirements, body.force_reinstall));
            }
            Self::Form { fields } => fields,
        };
        let mut lines = Vec::new();
        let mut force = false;
        for (name, value) in fields {
            match name.as_str() {
                "requirments" | "requirements" => lines.push(value),
                "force_reinstall" => {
                    force = parse_bool(&value).ok_or_else(|| {
                        ApiError::bad_request("invalid_field", "force_reinstall must be True or False.")
                    })?;
                }
                _ => {}
            }
        }
        Ok((lines, force))
    }
}
