//! `GET /api/health`: the NDP Endpoint API is up. No authentication.

use std::time::SystemTime;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use rexec_shared::http::api::ndp::Health;
use rexec_shared::http::error::ApiError;
use rexec_shared::http::request::json;

/// Liveness: always `healthy` while the function answers.
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
