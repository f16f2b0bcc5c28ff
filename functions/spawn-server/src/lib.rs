//! `POST /rexec/spawn`: creates the caller's rexec-server, reuses it when it already runs the
//! same requirements, or replaces it when `force_reinstall` is set. Answers once the objects are
//! written; `GET /rexec/server` follows the pod.
//!
//! Two bodies are accepted. The published clients send a form: `requirments` (spelled so)
//! repeated per line, `force_reinstall` (`True`/`False`, any case, or 1/0) and `token`. Others
//! may send JSON `{"requirements": [...], "force_reinstall": false}` with the Bearer header.
//! The body is read once; its fields are judged only after the caller is authenticated.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use rexec_shared::access::Access;
use rexec_shared::config::{ConfigError, Vars, parse_bool};
use rexec_shared::error::{ApiError, ErrorBody};
use rexec_shared::request::{self, MAX_FORM_BYTES, has_content_type, json};
use rexec_shared::requirements::RequirementsPolicy;
use rexec_shared::spawner::{ServerView, Spawned, Spawner};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub struct Deps {
    pub access: Access,
    pub policy: RequirementsPolicy,
    pub spawner: Spawner,
}

impl Deps {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            access: Access::from_vars(vars)?,
            policy: RequirementsPolicy::from_vars(vars)?,
            spawner: Spawner::from_vars(vars)?,
        })
    }
}

/// The form the published clients send.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct SpawnForm {
    /// One requirement line per field, repeated, in file order; one is `python==X.Y`.
    #[schema(example = json!(["python==3.11", "numpy>=1.26"]))]
    requirments: Vec<String>,
    /// `True` replaces a server that runs other requirements.
    #[schema(example = "False")]
    force_reinstall: Option<String>,
    /// The caller's token, when no Authorization header is sent.
    token: Option<String>,
}

/// The JSON body, sent with `Authorization: Bearer`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnJson {
    #[schema(example = json!(["python==3.11", "numpy>=1.26"]))]
    pub requirements: Vec<String>,
    #[serde(default)]
    pub force_reinstall: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SpawnAnswer {
    /// What happened, for a person.
    #[serde(rename = "Status")]
    #[schema(example = "Your rexec server is being created.")]
    pub status: String,
    #[serde(rename = "Username")]
    pub username: String,
    /// The caller's group that admitted them, when an allow-list is enforced.
    #[serde(rename = "NDP_Endpoint_membership")]
    pub membership: Option<String>,
    pub outcome: Spawned,
    pub server: ServerView,
}

/// Create, reuse or replace the caller's rexec-server.
#[utoipa::path(
    post,
    path = "/spawn",
    tag = "server",
    security(("bearer" = [])),
    request_body(content(
        (SpawnForm = "application/x-www-form-urlencoded"),
        (SpawnJson = "application/json"),
    )),
    responses(
        (status = 201, description = "Created, or replaced (`force_reinstall`).", body = SpawnAnswer),
        (status = 200, description = "Reused: the server runs these requirements already.", body = SpawnAnswer),
        (status = 400, description = "A bad requirement (the line and the reason), no python==X.Y pin, a bad field.", body = ErrorBody),
        (status = 401, description = "No token, or a token that was refused.", body = ErrorBody),
        (status = 403, description = "The caller is in no allowed group.", body = ErrorBody),
        (status = 409, description = "A server with other requirements runs (send force_reinstall=True); the previous one is still being removed or the quota has no room yet (Retry-After); a namespace of that name is not yours.", body = ErrorBody),
        (status = 413, description = "Too many requirements, or a body too large.", body = ErrorBody),
        (status = 415, description = "Neither a form nor JSON.", body = ErrorBody),
        (status = 503, description = "The identity service or the cluster is unreachable.", body = ErrorBody),
    )
)]
pub async fn handler(deps: &Deps, req: Request) -> Result<Response<Body>, ApiError> {
    let body = SpawnBody::read(&req)?;
    let token = request::bearer_or(&req, body.token())?;
    let caller = deps.access.authenticate(&token).await?;
    let (lines, force) = body.fields()?;
    let requirements = deps.policy.check(&lines)?;
    let (outcome, server) = deps.spawner.spawn(&caller, &requirements, force).await?;
    tracing::info!(outcome = ?outcome, namespace = %server.namespace, generation = server.generation, "spawn");
    let (status, message) = match outcome {
        Spawned::Created => (StatusCode::CREATED, "Your rexec server is being created."),
        Spawned::Reused => (
            StatusCode::OK,
            "Your rexec server already runs these requirements; it is reused.",
        ),
        Spawned::Replaced => (
            StatusCode::CREATED,
            "Your rexec server is being replaced with the new requirements.",
        ),
    };
    let answer = SpawnAnswer {
        status: message.into(),
        username: caller.username.clone(),
        membership: deps.access.policy().membership(&caller),
        outcome,
        server,
    };
    Ok(json(status, &answer))
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
