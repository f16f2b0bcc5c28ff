//! `GET /api/health`: the NDP Endpoint API is up. No authentication.

use std::time::SystemTime;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use rexec_shared::error::ApiError;
use rexec_shared::request::json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    #[schema(example = "healthy")]
    pub status: String,
    /// ISO-8601 UTC time of the answer.
    #[schema(example = "2026-11-22T20:45:47.651216Z")]
    pub timestamp: String,
}

/// Liveness: always `healthy` while the function answers.
#[utoipa::path(get, path = "/health", tag = "status", responses((status = 200, description = "The API is up.", body = Health)))]
pub async fn handler(_req: Request) -> Result<Response<Body>, ApiError> {
    let timestamp = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    Ok(json(
        StatusCode::OK,
        &Health {
            status: "healthy".into(),
            timestamp,
        },
    ))
}
