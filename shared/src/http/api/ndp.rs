//! The NDP Endpoint API (`/api`): liveness, version, and where the Rexec Deployment API lives.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use utoipa::openapi::OpenApi as Document;
use utoipa::{OpenApi, ToSchema};

use crate::http::docs::BearerSecurity;
use crate::http::error::ErrorBody;

/// `GET /health`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    #[schema(example = "healthy")]
    pub status: String,
    /// ISO-8601 UTC time of the answer.
    #[schema(example = "2026-11-22T20:45:47.651216Z")]
    pub timestamp: String,
}

/// `GET /status/`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    pub status: String,
    #[schema(example = "ndp-endpoint-api")]
    pub service: String,
    /// The version of this API.
    #[schema(example = "0.2.0")]
    pub api_version: String,
    /// Whether this endpoint offers remote execution (`GET /status/rexec`).
    pub rexec_enabled: bool,
}

/// `GET /status/rexec`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RexecStatus {
    /// The Rexec Deployment API's base URL.
    #[schema(example = "https://api.example.org/rexec")]
    pub deployment_api_url: String,
}

/// Liveness: always `healthy` while the function answers.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "status",
    responses((status = 200, description = "The API is up.", body = Health))
)]
#[allow(dead_code)]
fn health() {}

/// The API's version and what it offers. No authentication.
#[utoipa::path(
    get,
    path = "/status/",
    operation_id = "status",
    tag = "status",
    responses((status = 200, description = "The API's status.", body = Status))
)]
#[allow(dead_code)]
fn status() {}

/// Where the Rexec Deployment API lives.
#[utoipa::path(
    get,
    path = "/status/rexec",
    operation_id = "rexec_status",
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
#[allow(dead_code)]
fn rexec_status() {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "NDP Endpoint API",
        description = "Liveness, version, and where the Rexec Deployment API lives.",
    ),
    servers((url = "/api")),
    paths(health, status, rexec_status),
    components(schemas(ErrorBody)),
    modifiers(&BearerSecurity),
)]
struct NdpApi;

/// The document as published (see [`super`]).
pub const PUBLISHED: super::Published = super::Published {
    title: "NDP Endpoint API",
    json: include_str!("../../../openapi/ndp.json"),
};

/// The document, built from the contract. `/status` answers as `/status/` does.
pub static OPENAPI: LazyLock<Document> = LazyLock::new(|| {
    let mut doc = super::versioned(NdpApi::openapi());
    if let Some(mut item) = doc.paths.paths.get("/status/").cloned() {
        if let Some(op) = item.get.as_mut() {
            op.operation_id = Some("status_without_slash".into());
        }
        doc.paths.paths.insert("/status".into(), item);
    }
    doc
});
