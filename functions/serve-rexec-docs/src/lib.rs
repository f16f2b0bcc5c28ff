//! `GET /rexec/docs`, `/rexec/redoc`, `/rexec/openapi.json`: the Rexec Deployment API's
//! documentation, as published from its contract in the shared library.

use lambda_http::{Body, Request, Response};
use rexec_shared::http::api::rexec::PUBLISHED;
use rexec_shared::http::docs;
use rexec_shared::http::error::ApiError;

pub async fn handler(req: Request) -> Result<Response<Body>, ApiError> {
    docs::page(&req, &PUBLISHED)
}
