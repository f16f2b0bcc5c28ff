//! `GET /rexec/docs`, `/rexec/redoc`, `/rexec/openapi.json`: the Rexec Deployment API's
//! documentation, generated from the handlers' own annotations.

use std::sync::LazyLock;

use lambda_http::{Body, Request, Response};
use rexec_shared::docs::{self, BearerSecurity};
use rexec_shared::error::{ApiError, ErrorBody};
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Document;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rexec Deployment API",
        description = "Create, inspect and remove the caller's personal rexec-server, and find the broker.",
    ),
    servers((url = "/rexec")),
    paths(
        spawn_server::handler,
        delete_server::terminate,
        delete_server::handler,
        get_server::handler,
        get_broker_config::handler,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerSecurity),
)]
struct RexecApi;

/// The document, built once per container.
pub static OPENAPI: LazyLock<Document> = LazyLock::new(|| {
    let mut doc = RexecApi::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc
});

pub async fn handler(req: Request) -> Result<Response<Body>, ApiError> {
    docs::page(&req, &OPENAPI)
}
